package caddymodule

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// runLeased connects only while this process holds the robot's lease in
// the store, renewing it every third of its length. Whoever holds it keeps
// it while the store cannot be reached (no other instance can take it
// then); it lets go when the store says another holder has it, and
// releases it when the connection closes for good, so that another
// instance takes over at once. A holder that dies stops renewing: another
// one takes over within the lease.
func (l *streamLink) runLeased() {
	r := l.route.Load()
	key := "stream/lease/" + r.clientID
	every := r.lease / 3
	waiting := false
	for {
		held, err := l.claimLease(key, r.lease)
		if l.ctx.Err() != nil {
			return
		}
		if !held {
			if !waiting {
				l.route.Load().logger.Info("dingtalk stream waiting for the single connection's lease", zap.NamedError("store_error", err))
				waiting = true
			}
			if !sleepOrDone(l.ctx, every) {
				return
			}
			continue
		}
		waiting = false
		l.route.Load().logger.Info("dingtalk stream holds the single connection's lease")
		l.connectWhileHeld(key, r.lease, every)
		if l.ctx.Err() != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = l.route.Load().store.Release(ctx, key, l.token)
			cancel()
			return
		}
	}
}

// connectWhileHeld runs the connection until Destruct or until the lease
// turns out to be someone else's.
func (l *streamLink) connectWhileHeld(key string, lease, every time.Duration) {
	ctx, cancel := context.WithCancel(l.ctx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		defer cancel()
		for sleepOrDone(ctx, every) {
			held, err := l.claimLease(key, lease)
			if err == nil && !held {
				l.route.Load().logger.Warn("dingtalk stream lost the single connection's lease to another instance; closing")
				return
			}
		}
	}()
	_ = l.client.Run(ctx)
	cancel()
	<-renewed
}

// claimLease takes or renews the lease and reports whether this process
// holds it.
func (l *streamLink) claimLease(key string, lease time.Duration) (bool, error) {
	store := l.route.Load().store
	ctx, cancel := context.WithTimeout(l.ctx, 5*time.Second)
	defer cancel()
	now := time.Now()
	held, err := store.Claim(ctx, key, l.token, now, lease)
	if err != nil || !held {
		return false, err
	}
	// Claim leaves a lease it already held as it was: extend it.
	return true, store.Keep(ctx, key, l.token, now, lease)
}

// sleepOrDone waits for d and reports whether ctx is still going.
func sleepOrDone(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
