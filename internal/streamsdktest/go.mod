module github.com/caddy-dingtalk/caddy-dingtalk/internal/streamsdktest

go 1.26.0

require (
	github.com/caddy-dingtalk/caddy-dingtalk v0.0.0
	github.com/open-dingtalk/dingtalk-stream-sdk-go v0.9.1
)

require (
	github.com/coder/websocket v1.8.15 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/gorilla/websocket v1.5.0 // indirect
)

replace github.com/caddy-dingtalk/caddy-dingtalk => ../..
