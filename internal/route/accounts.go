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
	"github.com/authsidecar/authsidecar/proxy"
)

// Accounts are a route's vendor accounts besides its configured one. They
// are data in the token store, so every replica sees them: each account's
// token under its own key, and the route's list of accounts. A replica
// loads an account's keeper when a call names it and drops the least
// recently used beyond maxLiveAccounts; nothing is dropped from the store.
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
}

// maxLiveAccounts bounds the keepers a replica holds (a few KiB each).
const maxLiveAccounts = 1024

// ErrNoAccounts is the answer for a route whose grant cannot have accounts.
var ErrNoAccounts = errors.New("the route's grant has no accounts (they need an OAuth2 grant with refresh tokens)")

func newAccounts(r *Route, routeKey, consentPath string, d Deps) *Accounts {
	a := &Accounts{route: r.Name, own: r.Keeper, base: r.Grant, consent: consentPath, routeKey: routeKey, d: d,
		live: map[string]*list.Element{}}
	_, err := auth.AccountGrant(r.Grant, "")
	a.enabled = err == nil
	return a
}

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
	return k.Token(ctx)
}

// Invalidate implements proxy.TokenSource.
func (a *Accounts) Invalidate(ctx context.Context, accessToken string) {
	name, ok := proxy.AccountFrom(ctx)
	if !ok {
		a.own.Invalidate(accessToken)
		return
	}
	if k := a.cached(name); k != nil {
		k.Invalidate(accessToken)
	}
}

// cached is account name's keeper if this replica holds it, marked as
// just used; nil if not.
func (a *Accounts) cached(name string) *auth.Keeper {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cachedLocked(name)
}

func (a *Accounts) cachedLocked(name string) *auth.Keeper {
	e, ok := a.live[name]
	if !ok {
		return nil
	}
	a.lru.MoveToFront(e)
	return e.Value.(*liveAccount).keeper
}

// Keeper is the keeper of account name, loaded on demand: an
// UnknownAccountError when the route has no such account.
func (a *Accounts) Keeper(ctx context.Context, name string) (*auth.Keeper, error) {
	if k := a.cached(name); k != nil {
		return k, nil
	}
	if !a.enabled {
		return nil, &auth.UnknownAccountError{Route: a.route, Account: name}
	}
	names, err := a.List(ctx)
	if err != nil {
		return nil, &auth.FetchError{Route: a.route, Kind: auth.Unavailable, Err: err}
	}
	if !slices.Contains(names, name) {
		return nil, &auth.UnknownAccountError{Route: a.route, Account: name}
	}
	return a.load(name), nil
}

// load puts account name's keeper among the live ones.
func (a *Accounts) load(name string) *auth.Keeper {
	a.mu.Lock()
	defer a.mu.Unlock()
	if k := a.cachedLocked(name); k != nil {
		return k
	}
	consent := ""
	if a.consent != "" {
		consent = a.consent + "?account=" + name // names need no escaping
	}
	g, _ := auth.AccountGrant(a.base, consent) // enabled: it cannot fail
	k := newKeeper(a.route, g, auth.StoreKeyForAccount(a.routeKey, name), "", a.d)
	a.live[name] = a.lru.PushFront(&liveAccount{name: name, keeper: k})
	for a.lru.Len() > maxLiveAccounts {
		oldest := a.lru.Back()
		a.lru.Remove(oldest)
		delete(a.live, oldest.Value.(*liveAccount).name)
	}
	return k
}

// Live is how many accounts this replica holds in memory.
func (a *Accounts) Live() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lru.Len()
}

func (a *Accounts) listKey() string { return a.routeKey + ":accounts" }

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
	if !a.enabled {
		return fmt.Errorf("route %s: %w", a.route, ErrNoAccounts)
	}
	if err := auth.CheckAccountName(name); err != nil {
		return err
	}
	k := a.load(name)
	if err := k.Store(ctx, tok); err != nil {
		return fmt.Errorf("storing account %s's token: %w", name, err)
	}
	return a.editList(ctx, func(names []string) []string {
		if i, found := slices.BinarySearch(names, name); !found {
			names = slices.Insert(names, i, name)
		}
		return names
	})
}

// Remove forgets account name: its token and its place in the list.
func (a *Accounts) Remove(ctx context.Context, name string) error {
	k, err := a.Keeper(ctx, name)
	if err != nil {
		return err
	}
	if err := k.Forget(ctx); err != nil {
		return fmt.Errorf("forgetting account %s's token: %w", name, err)
	}
	a.mu.Lock()
	if e, ok := a.live[name]; ok {
		a.lru.Remove(e)
		delete(a.live, name)
	}
	a.mu.Unlock()
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
