// Package clock is the one way the sidecar reads the time, so that tests and
// the demo's emulated vendors can move it by hand.
package clock

import "time"

// Clock returns the current time. The zero Clock (nil) is the wall clock, so
// no component needs a nil check or a default of its own.
type Clock func() time.Time

// Now is the clock's current time.
func (c Clock) Now() time.Time {
	if c == nil {
		return time.Now()
	}
	return c()
}

// Since is the time elapsed since t by this clock.
func (c Clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// Until is the time left until t by this clock.
func (c Clock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }
