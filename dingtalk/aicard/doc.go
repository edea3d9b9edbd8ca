// Package aicard turns a streamed answer into a DingTalk AI card that fills
// in as the text arrives (the "typing" effect), through the OpenAPI client
// of package openapi.
//
// A Decoder reads the text out of the bytes a backend streams: Server-Sent
// Events in OpenAI's chat-completions form, plain SSE, or a chunked text
// body. A Stream takes that text and drives one card: it creates and
// delivers the card, sends full-content updates at most one at a time and
// no more often than an interval, the newest content winning, finalizes it
// with its state finished, or failed when the answer broke off. Content over
// a card's limit continues in a new card (or is handed back for plain
// messages); a card that cannot be created hands the whole text back, so
// the caller can post it as a message instead.
//
// Memory stays bounded however long the stream: a Stream holds the current
// card's content and a bounded backlog, and Write blocks, slowing the
// backend down, when the backlog is full.
//
// Like its parent package, it does not import Caddy.
package aicard
