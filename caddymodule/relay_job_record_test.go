package caddymodule

import (
	"net/http"
	"reflect"
	"testing"
)

// A job record comes back as the request the job runs again: every field,
// every header value in order, the sign's headers as they were verified
// (not as the request had them), and not the handler's own header.
func TestJobRecordRoundTrip(t *testing.T) {
	rec := jobRecord{
		Method: http.MethodPost, URI: "/robot?x=1", Host: "bot.example.com:8443", RemoteAddr: "127.0.0.1:5000",
		TLS: true, Body: `{"msgtype":"text"}` + "\x00\xff", VerifiedAt: -1, Server: "srv0",
		Header: http.Header{
			"Content-Type": {"application/json"},
			"X-Many":       {"one", "", "three"},
			headerBot:      {"set by the handler"},
			timestampKey:   {"as the request had it"},
		},
		timestamp: "1700000000000", sign: "c2lnbg==",
	}
	got, err := decodeJobRecord(rec.encode())
	if err != nil {
		t.Fatal(err)
	}
	want := rec
	want.Header = http.Header{
		"Content-Type": {"application/json"},
		"X-Many":       {"one", "", "three"},
		timestampKey:   {"1700000000000"},
		signKey:        {"c2lnbg=="},
	}
	want.timestamp, want.sign = "", ""
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", *got, want)
	}
	r := got.request(t.Context())
	if r.URL.Path != "/robot" || r.URL.RawQuery != "x=1" || r.TLS == nil || r.TLS.ServerName != "bot.example.com" {
		t.Fatalf("the request rebuilt: %v, TLS %+v", r.URL, r.TLS)
	}
}

// A record cut short, or of another format, is refused, never misread.
func TestJobRecordDamaged(t *testing.T) {
	b := (&jobRecord{Method: "POST", URI: "/", Header: http.Header{"A": {"b"}}, timestamp: "1", sign: "s"}).encode()
	for n := range len(b) {
		if _, err := decodeJobRecord(b[:n]); err == nil {
			t.Fatalf("a record cut to %d of its %d bytes was read", n, len(b))
		}
	}
	other := append([]byte{jobRecordFormat + 1}, b[1:]...)
	if _, err := decodeJobRecord(other); err == nil {
		t.Fatal("a record of another format was read")
	}
	if _, err := decodeJobRecord(append(b, 0)); err == nil {
		t.Fatal("a record with bytes after its end was read")
	}
}

// FuzzJobRecord feeds the decoder what a damaged store could hold: it
// refuses or reads it, and never panics.
func FuzzJobRecord(f *testing.F) {
	f.Add((&jobRecord{Method: "POST", URI: "/robot", Header: http.Header{"A": {"b", "c"}}, Body: "{}"}).encode())
	f.Add([]byte{jobRecordFormat, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeJobRecord(b)
		if err == nil {
			_ = rec.request(t.Context())
		}
	})
}
