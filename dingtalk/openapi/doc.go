// Package openapi calls DingTalk's OpenAPI (https://api.dingtalk.com) as a
// robot application: it fetches and caches the access token, paces calls
// through a per-robot Budget, backs off when DingTalk answers that the QPS
// limit is reached, and sends robot messages and resolves media download
// codes.
//
// A Client is one robot application (AppKey, AppSecret, robot code). Every
// call goes through Client.Call, which owns the token, the budget and the
// retries; an endpoint is a small method that names its path and its request
// and answer types, so new endpoints (the AI card's createAndDeliver,
// streaming and instance updates) are added the same way as the ones here.
//
// Several gateways that call as the same robot share its token and its
// budget through a TokenStore and a Budget backed by a shared store (Redis):
// together they fetch one token and stay under one rate.
//
// Like its parent package, it does not import Caddy.
package openapi
