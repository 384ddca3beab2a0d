package cache_test

import (
	"bytes"
	"testing"

	"github.com/authsidecar/authsidecar/cache"
)

func sealingKey(b byte) []byte { return bytes.Repeat([]byte{b}, cache.KeySize) }

// A rotated key seals from then on while every key that sealed before
// still opens; an accepted key opens without sealing.
func TestSealerRotateAndAccept(t *testing.T) {
	s, err := cache.NewSealer(sealingKey(1))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := s.Seal("token:a", []byte("one"))
	if err := s.Rotate(sealingKey(2)); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Seal("token:a", []byte("two"))
	if got, err := s.Open("token:a", before); err != nil || string(got) != "one" {
		t.Fatalf("a value sealed before the rotation: %q %v", got, err)
	}
	onlyNew, _ := cache.NewSealer(sealingKey(2))
	if got, err := onlyNew.Open("token:a", after); err != nil || string(got) != "two" {
		t.Fatalf("a value sealed after the rotation, opened with the new key alone: %q %v", got, err)
	}
	if _, err := onlyNew.Open("token:a", before); err == nil {
		t.Fatal("the new key alone opened a value sealed with the old one")
	}

	other, _ := cache.NewSealer(sealingKey(3))
	foreign, _ := other.Seal("token:a", []byte("three"))
	if _, err := s.Open("token:a", foreign); err == nil {
		t.Fatal("opened a value sealed with a key never given")
	}
	if err := s.Accept(sealingKey(3)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Open("token:a", foreign); err != nil || string(got) != "three" {
		t.Fatalf("an accepted key: %q %v", got, err)
	}
	sealed, _ := s.Seal("token:a", []byte("four"))
	if _, err := onlyNew.Open("token:a", sealed); err != nil {
		t.Fatal("after Accept, the sealer no longer seals with its current key")
	}
	if err := s.Rotate(sealingKey(9)[:16]); err == nil {
		t.Fatal("a 16-byte key was taken")
	}
}
