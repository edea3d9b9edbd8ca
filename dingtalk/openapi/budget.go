package openapi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// DefaultRate is the calls per second a robot makes unless told otherwise:
// DingTalk's limit per application and API on a standard organisation.
const DefaultRate = 20

// ErrBudgetSpent is returned, without calling DingTalk, when the robot's
// budget allows no call before the context's deadline (or the wait allowed
// by WithBudgetWait). errors.As with a *BudgetError tells how long to wait.
var ErrBudgetSpent = errors.New("the robot's OpenAPI call budget is spent")

// BudgetError is ErrBudgetSpent with the time until the budget allows a call.
type BudgetError struct {
	Wait time.Duration
}

// Error describes the wait.
func (e *BudgetError) Error() string {
	return fmt.Sprintf("%v: the next call is allowed in %v", ErrBudgetSpent, e.Wait.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrBudgetSpent) true.
func (e *BudgetError) Is(target error) bool { return target == ErrBudgetSpent }

// Budget paces the OpenAPI calls of one robot application. The local
// implementation is Pace; a shared store (Redis) implements it for several
// gateways at once, so that their calls together stay under one rate.
type Budget interface {
	// Take spends one call and returns 0 when the budget allows one now.
	// Otherwise it spends nothing and returns how long until it will allow
	// one (another caller may take that one first).
	Take(ctx context.Context) (time.Duration, error)
}

// Interval is how far apart a budget of perSecond calls a second spaces
// them (DefaultRate when not positive): 5% more than 1/perSecond, so that
// the jitter of the network cannot put perSecond+1 calls into one second
// of DingTalk's count unless it delays one call by a twentieth of a second
// more than the next.
func Interval(perSecond int) time.Duration {
	if perSecond <= 0 {
		perSecond = DefaultRate
	}
	return time.Second * 105 / time.Duration(100*perSecond)
}

// Pace is a Budget for one process: calls at most perSecond a second, spaced
// Interval(perSecond) apart. It keeps no burst: DingTalk counts calls per
// second, and a bucket that saved up perSecond calls could spend them at the
// end of one second and again at the start of the next, twice the limit in
// one second. Safe for concurrent use.
type Pace struct {
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	next time.Time // when the next call is allowed
}

// NewPace returns a Pace of perSecond calls a second (DefaultRate when not
// positive). now gives the time; nil means time.Now.
func NewPace(perSecond int, now func() time.Time) *Pace {
	if now == nil {
		now = time.Now
	}
	return &Pace{interval: Interval(perSecond), now: now}
}

// Take implements Budget.
func (p *Pace) Take(context.Context) (time.Duration, error) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if wait := p.next.Sub(now); wait > 0 {
		return wait, nil
	}
	p.next = now.Add(p.interval)
	return 0, nil
}

type budgetWaitKey struct{}

// WithBudgetWait bounds how long a call made with ctx waits for the budget:
// when the budget allows no call within max, it fails at once with a
// *BudgetError. Without it a call waits
// as long as its context allows. A handler answering a request uses it to
// answer 429 rather than hold the request.
func WithBudgetWait(ctx context.Context, max time.Duration) context.Context {
	return context.WithValue(ctx, budgetWaitKey{}, max)
}

// spend waits until budget allows a call and spends it, or returns a
// *BudgetError when that would take longer than ctx allows.
func spend(ctx context.Context, budget Budget, now func() time.Time) error {
	limit, limited := ctx.Deadline()
	if max, ok := ctx.Value(budgetWaitKey{}).(time.Duration); ok {
		if l := now().Add(max); !limited || l.Before(limit) {
			limit, limited = l, true
		}
	}
	for {
		wait, err := budget.Take(ctx)
		if err != nil {
			return fmt.Errorf("taking a call from the robot's budget: %w", err)
		}
		if wait <= 0 {
			return nil
		}
		if limited && now().Add(wait).After(limit) {
			return &BudgetError{Wait: wait}
		}
		if err := dingtalk.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}
