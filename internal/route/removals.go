package route

import (
	"context"
	"encoding/json"

	"go.uber.org/zap"
)

// RemovalsChannel is where a removed account is announced to the fleet. A
// replica holds an account's token in memory; without the announcement it
// would serve a removed account until that token was refused or due for
// refresh (an hour, with many vendors), and the operator's command, which
// runs in a process of its own, would stop it on no serving replica at all.
const RemovalsChannel = "accounts:removed"

type removal struct {
	Route   string `json:"route"`
	Account string `json:"account"`
}

// announceRemoval tells every replica that account name is gone. Its marker
// is gone already, so a replica that misses this finds out at the account's
// next refresh; the log says so.
func (a *Accounts) announceRemoval(ctx context.Context, name string) {
	if a.d.Shared == nil {
		return // no fleet: this process's store, this process's keepers
	}
	msg, _ := json.Marshal(removal{Route: a.route, Account: name})
	if err := a.d.Shared.Publish(ctx, RemovalsChannel, msg); err != nil {
		a.d.Logger.Warn("account removed, but the other replicas were not told: they serve it until its token is refused or due for refresh",
			zap.String("route", a.route), zap.String("account", name), zap.Error(err))
	}
}

// ListenForRemovals drops this replica's keepers of accounts removed
// anywhere in the fleet, until ctx ends: the next call naming one finds its
// marker gone. subscribe is the shared store's (cache.Redis.Subscribe).
// Each time the subscription is made again (after a lost connection), every
// held account is looked up in the store at its next call, for removals
// announced meanwhile.
func ListenForRemovals(ctx context.Context, subscribe func(ctx context.Context, channel string, handle func([]byte), ready func()), routes *Table) {
	subscribe(ctx, RemovalsChannel, func(msg []byte) {
		var r removal
		if json.Unmarshal(msg, &r) != nil {
			return
		}
		if rt, ok := routes.Get(r.Route); ok {
			rt.Accounts.drop(r.Account)
		}
	}, func() {
		for _, rt := range routes.All() {
			rt.Accounts.recheck()
		}
	})
}
