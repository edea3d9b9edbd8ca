package openapi

import "context"

type noQPSRetryKey struct{}

// WithoutQPSRetry makes calls with ctx return an ErrQPSLimit answer at once
// instead of backing off and retrying it. A caller that would send
// something newer by the time a retry is due (a streamed card's next
// snapshot) slows down on its own instead of repeating a stale call.
func WithoutQPSRetry(ctx context.Context) context.Context {
	return context.WithValue(ctx, noQPSRetryKey{}, true)
}

// retriesQPS reports whether calls with ctx retry ErrQPSLimit answers.
func retriesQPS(ctx context.Context) bool {
	no, _ := ctx.Value(noQPSRetryKey{}).(bool)
	return !no
}
