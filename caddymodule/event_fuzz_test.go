package caddymodule

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/event"
)

// FuzzEventDecrypt sends pushes with fuzzed ciphertexts through the
// handler, correctly signed so that they reach decryption, and checks the
// promise both ways: a push reaches the next handler if and only if its
// ciphertext decrypts (canonically, for the owner key) to a JSON object
// with an EventType that is not a URL check; what the next handler reads is
// then exactly that JSON. Nothing malformed reaches it, nothing panics.
// asRaw encrypts the fuzzed bytes as whole AES blocks, so that the fuzzer
// explores the padding, length and owner-key checks behind the decryption;
// otherwise they are the base64 text itself.
func FuzzEventDecrypt(f *testing.F) {
	h := newTestEventHandler(f, &EventHandler{Dedupe: "off"})
	h.logger = zap.NewNop() // a WARN per rejection would slow the fuzzer down
	c := testEventCrypto(f)
	key, _ := base64.StdEncoding.DecodeString(eventAESKey + "=")
	blk, err := aes.NewCipher(key)
	if err != nil {
		f.Fatal(err)
	}
	rawOf := func(encrypt string) []byte {
		raw, _ := base64.StdEncoding.DecodeString(encrypt)
		cipher.NewCBCDecrypter(blk, key[:16]).CryptBlocks(raw, raw)
		return raw
	}
	for _, plain := range []string{`{"EventType":"user_add_org","eventId":"e1"}`, `{"EventType":"check_url"}`, `success`, `{}`, `{"EventType":"a\nb"}`} {
		enc := c.Encrypt([]byte(plain))
		f.Add([]byte(enc), false)
		f.Add(rawOf(enc), true)
	}
	f.Add([]byte("!!"), false)
	f.Add(make([]byte, 64), true)
	ts := strconv.FormatInt(fixedNow.UnixMilli(), 10)

	f.Fuzz(func(t *testing.T, data []byte, asRaw bool) {
		encrypt := string(data)
		if asRaw {
			buf := bytes.Clone(data[:len(data)/16*16])
			cipher.NewCBCEncrypter(blk, key[:16]).CryptBlocks(buf, buf)
			encrypt = base64.StdEncoding.EncodeToString(buf)
		}
		e := event.Envelope{Signature: event.Signature(eventToken, ts, "n", encrypt), Timestamp: ts, Nonce: "n", Encrypt: encrypt}
		req := httptest.NewRequest(http.MethodPost, "/events?"+e.Query().Encode(), bytes.NewReader(e.Body()))
		got := serveEvent(t, h, req, http.StatusOK)

		plain, decErr := c.Decrypt(encrypt)
		ev, parseErr := event.Parse(plain)
		wellFormed := decErr == nil && parseErr == nil && headerSafe(ev.Type)
		switch {
		case got.reached != nil && !wellFormed:
			t.Fatalf("a malformed push reached the next handler (decrypt: %v, parse: %v): %q", decErr, parseErr, got.body)
		case got.reached != nil && got.body != string(plain):
			t.Fatalf("the next handler read %q, not the plaintext %q", got.body, plain)
		case got.reached == nil && wellFormed && !ev.IsHandshake():
			t.Fatalf("a well-formed event was not passed on: %d %q", got.status, got.reason)
		case got.reached == nil && !wellFormed && got.reason == "":
			t.Fatalf("a malformed push was answered %d without a reject reason", got.status)
		}
	})
}
