// Package streamsdktest proves that the fake Stream server of dingtalktest
// speaks DingTalk's protocol: DingTalk's official Go SDK connects to it,
// receives a robot message and acks it.
//
// It is a module of its own, so that the SDK and its dependencies stay out
// of caddy-dingtalk's module graph; .ci/run runs its test. From the
// repository's root: (cd internal/streamsdktest && go test ./...).
package streamsdktest
