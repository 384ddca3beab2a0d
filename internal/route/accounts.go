package route

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/auth"
	"github.com/authsidecar/authsidecar/cache"
	"github.com/authsidecar/authsidecar/internal/consent"
	"github.com/authsidecar/authsidecar/proxy"
)

// Accounts are a route's vendor accounts besides its configured one. They
// are data in the token store, so every replica sees them: each account's
// token under its own key, a marker saying the account exists, and the
// route's list of accounts (for listing only: a call looks at the marker,
// so a route with 10,000 accounts reads one small value per account it
// loads). A replica loads an account's keeper when a call names it and
// drops the least recently used beyond maxLiveAccounts; nothing is dropped
// from the store.
type Accounts struct {
	route    string
	own      *auth.Keeper
	base     auth.Grant // the route's grant, which accounts are made from
	enabled  bool       // the grant can have accounts
	consent  string     // the route's consent path; empty: none
	routeKey string
	d        Deps

	mu   sync.Mutex
	live map[string]*list.Element // of *liveAccount, most recent first
	lru  list.List
}

type liveAccount struct {
	name   string
	keeper *auth.Keeper
	// known is set once the account was seen to exist; a keeper made for
	// a consent under way is not, until the consent stores its token.
	known bool
}

// maxLiveAccounts bounds the keepers a replica holds (about 2 KiB each,
// see BenchmarkIdleAccounts).
const maxLiveAccounts = 1024

func newAccounts(r *Route, routeKey, consentPath string, d Deps) *Accounts {
	a := &Accounts{route: r.Name, own: r.Keeper, base: r.Grant, consent: consentPath, routeKey: routeKey, d: d,
		live: map[string]*list.Element{}}
	_, err := auth.AccountGrant(r.Grant, "")
	a.enabled = err == nil
	return a
}

// Enabled reports whether the route's grant can have accounts.
func (a *Accounts) Enabled() bool { return a.enabled }

// Token implements proxy.TokenSource: the token of the account the call
// named, or of the route's own.
func (a *Accounts) Token(ctx context.Context) (auth.Token, error) {
	name, ok := proxy.AccountFrom(ctx)
	if !ok {
		return a.own.Token(ctx)
	}
	k, err := a.Keeper(ctx, name)
	if err != nil {
		return auth.Token{}, err
	}
	tok, err := k.Token(ctx)
	if err != nil && auth.KindOf(err) == auth.ConsentRequired && a.removedElsewhere(ctx, name) {
		// Another replica removed the account since this one loaded it.
		return auth.Token{}, &auth.UnknownAccountError{Route: a.route, Account: name}
	}
	return tok, err
}

// Invalidate implements proxy.TokenSource.
func (a *Accounts) Invalidate(ctx context.Context, accessToken string) {
	name, ok := proxy.AccountFrom(ctx)
	if !ok {
		a.own.Invalidate(accessToken)
		return
	}
	a.mu.Lock()
	e, held := a.live[name]
	a.mu.Unlock()
	if held {
		e.Value.(*liveAccount).keeper.Invalidate(accessToken)
	}
}

// Keeper is the keeper of account name, loaded on demand: an
// UnknownAccountError when the route has no such account.
func (a *Accounts) Keeper(ctx context.Context, name string) (*auth.Keeper, error) {
	if k := a.held(name, true); k != nil {
		return k, nil
	}
	if !a.enabled || !auth.ValidAccount(name) {
		return nil, &auth.UnknownAccountError{Route: a.route, Account: name}
	}
	switch _, err := a.d.Store.Get(ctx, a.markerKey(name)); {
	case errors.Is(err, cache.ErrNotFound):
		return nil, &auth.UnknownAccountError{Route: a.route, Account: name}
	case err != nil:
		return nil, &auth.FetchError{Route: a.route, Kind: auth.Unavailable, Err: fmt.Errorf("looking up account %s: %w", name, err)}
	}
	return a.load(name, true), nil
}

// Pending is the keeper of account name whether or not it exists yet: what
// consent stores a new account's first token through (then Enlist).
func (a *Accounts) Pending(name string) (consent.Keeper, error) {
	if !a.enabled {
		return nil, fmt.Errorf("route %s: %w", a.route, auth.ErrNoAccounts)
	}
	if err := auth.CheckAccountName(name); err != nil {
		return nil, err
	}
	return a.load(name, false), nil
}

// held is account name's keeper if this replica holds it (and, with
// known, knows it exists), marked as just used; nil if not.
func (a *Accounts) held(name string, known bool) *auth.Keeper {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.live[name]
	if !ok || known && !e.Value.(*liveAccount).known {
		return nil
	}
	a.lru.MoveToFront(e)
	return e.Value.(*liveAccount).keeper
}

// load puts account name's keeper among the live ones; known records that
// the account exists.
func (a *Accounts) load(name string, known bool) *auth.Keeper {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.live[name]; ok {
		l := e.Value.(*liveAccount)
		l.known = l.known || known
		a.lru.MoveToFront(e)
		return l.keeper
	}
	consentPath := ""
	if a.consent != "" {
		consentPath = a.consent + "?account=" + name // names need no escaping
	}
	g, _ := auth.AccountGrant(a.base, consentPath) // enabled: it cannot fail
	k := newKeeper(a.route, name, g, auth.StoreKeyForAccount(a.routeKey, name), "", a.d)
	a.live[name] = a.lru.PushFront(&liveAccount{name: name, keeper: k, known: known})
	for a.lru.Len() > maxLiveAccounts {
		oldest := a.lru.Back()
		a.lru.Remove(oldest)
		delete(a.live, oldest.Value.(*liveAccount).name)
	}
	return k
}

// drop forgets this replica's keeper of account name.
func (a *Accounts) drop(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.live[name]; ok {
		a.lru.Remove(e)
		delete(a.live, name)
	}
}

// removedElsewhere reports whether account name's marker is gone, and then
// drops its keeper.
func (a *Accounts) removedElsewhere(ctx context.Context, name string) bool {
	if _, err := a.d.Store.Get(ctx, a.markerKey(name)); !errors.Is(err, cache.ErrNotFound) {
		return false
	}
	a.drop(name)
	return true
}

// recheck makes every held account be looked up in the store at its next
// call (its keeper and token are kept when it still exists).
func (a *Accounts) recheck() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.live {
		e.Value.(*liveAccount).known = false
	}
}

// Live is how many accounts this replica holds in memory.
func (a *Accounts) Live() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lru.Len()
}

func (a *Accounts) listKey() string              { return a.routeKey + ":accounts" }
func (a *Accounts) markerKey(name string) string { return a.routeKey + ":accounts:" + name }

// List is the route's accounts, sorted.
func (a *Accounts) List(ctx context.Context) ([]string, error) {
	raw, err := a.d.Store.Get(ctx, a.listKey())
	if errors.Is(err, cache.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading route %s's accounts: %w", a.route, err)
	}
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil {
		return nil, fmt.Errorf("reading route %s's accounts: %w", a.route, err)
	}
	return names, nil
}

// Add makes account name with tok (a refresh token, or an access token
// alone), replacing any token it had.
func (a *Accounts) Add(ctx context.Context, name string, tok auth.Token) error {
	k, err := a.Pending(name)
	if err != nil {
		return err
	}
	if err := k.Store(ctx, tok); err != nil {
		return fmt.Errorf("storing account %s's token: %w", name, err)
	}
	return a.Enlist(ctx, name)
}

// Enlist makes account name exist, its token stored already: its marker,
// then its place in the list.
func (a *Accounts) Enlist(ctx context.Context, name string) error {
	if err := a.d.Store.Set(ctx, a.markerKey(name), []byte("1"), 0); err != nil {
		return fmt.Errorf("recording account %s: %w", name, err)
	}
	a.load(name, true)
	return a.editList(ctx, func(names []string) []string {
		if i, found := slices.BinarySearch(names, name); !found {
			names = slices.Insert(names, i, name)
		}
		return names
	})
}

// Remove forgets account name: its marker first (calls for it stop), its
// token, and its place in the list.
func (a *Accounts) Remove(ctx context.Context, name string) error {
	k, err := a.Keeper(ctx, name)
	if err != nil {
		return err
	}
	if _, err := a.d.Store.CompareAndDelete(ctx, a.markerKey(name), []byte("1")); err != nil {
		return fmt.Errorf("removing account %s: %w", name, err)
	}
	a.drop(name)
	a.announceRemoval(ctx, name)
	if err := k.Forget(ctx); err != nil {
		return fmt.Errorf("forgetting account %s's token: %w", name, err)
	}
	return a.editList(ctx, func(names []string) []string {
		if i, found := slices.BinarySearch(names, name); found {
			names = slices.Delete(names, i, i+1)
		}
		return names
	})
}

// editList changes the list under the store's lock, so that replicas adding
// accounts at once lose none.
func (a *Accounts) editList(ctx context.Context, edit func([]string) []string) error {
	owner, lock := cache.NewLockOwner(), "lock:"+a.listKey()
	if err := cache.Acquire(ctx, a.d.Store, lock, owner, 10*time.Second, 10*time.Millisecond); err != nil {
		return fmt.Errorf("locking route %s's accounts: %w", a.route, err)
	}
	defer func() { _ = cache.Release(a.d.Store, lock, owner) }()
	names, err := a.List(ctx)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(edit(names))
	if err != nil {
		return fmt.Errorf("writing route %s's accounts: %w", a.route, err)
	}
	if err := a.d.Store.Set(ctx, a.listKey(), raw, 0); err != nil {
		return fmt.Errorf("writing route %s's accounts: %w", a.route, err)
	}
	return nil
}
