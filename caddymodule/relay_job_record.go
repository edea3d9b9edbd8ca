package caddymodule

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/url"
)

// A job recorded in the store is the callback as it arrived: the request
// goes through the server again when another holder takes the job over,
// so that the route's matchers and placeholders see what they saw the
// first time, and the dingtalk handler verifies the sign again, at the time
// it was first verified. The store holds no secret; the sign in it is
// useless once its timestamp is older than max_age.
type jobRecord struct {
	Method     string
	URI        string
	Host       string
	RemoteAddr string
	TLS        bool
	Header     http.Header // as the request has it; the sign's headers and the handler's own are left out
	Body       string
	VerifiedAt int64 // Unix milliseconds
	// The name of the server that received it: srv0 and so on, as the
	// Caddyfile names them, the same on every instance with the same
	// Caddyfile, whatever addresses each listens on.
	Server string

	// The sign's headers as they were verified, also when the route does
	// not forward them: the request's Header may lack them.
	timestamp, sign string
}

// jobRecordFormat is the first byte of an encoded record, so that a later
// format can tell records of this one.
const jobRecordFormat = 1

// encode writes the record in one allocation, without reflection: it is
// written before every async callback is acked (BENCHMARKS.md, J and H).
// Strings are a uvarint length and their bytes; the header is a count of
// name and value pairs, the sign's last.
func (rec *jobRecord) encode() []byte {
	size := 2 + binary.MaxVarintLen64 + binary.MaxVarintLen64
	strs := [...]string{rec.Method, rec.URI, rec.Host, rec.RemoteAddr, rec.Server, rec.Body}
	for _, s := range strs {
		size += binary.MaxVarintLen64 + len(s)
	}
	pairs := 2
	for name, values := range rec.Header {
		if recordsHeader(name) {
			for _, v := range values {
				size += 2*binary.MaxVarintLen64 + len(name) + len(v)
				pairs++
			}
		}
	}
	size += 2*binary.MaxVarintLen64 + len(timestampKey) + len(rec.timestamp) + len(signKey) + len(rec.sign)

	b := make([]byte, 0, size)
	var flags byte
	if rec.TLS {
		flags = 1
	}
	b = append(b, jobRecordFormat, flags)
	b = binary.AppendUvarint(b, uint64(rec.VerifiedAt)) // two's complement: any time
	for _, s := range strs {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(pairs))
	for name, values := range rec.Header {
		if recordsHeader(name) {
			for _, v := range values {
				b = appendString(appendString(b, name), v)
			}
		}
	}
	b = appendString(appendString(b, timestampKey), rec.timestamp)
	return appendString(appendString(b, signKey), rec.sign)
}

// recordsHeader reports whether a request header goes into the record as
// the request has it: the sign's are recorded as verified, the handler's
// own is set again when the job runs.
func recordsHeader(name string) bool {
	return name != headerBot && name != timestampKey && name != signKey
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// errJobRecord answers a record that is not one encode wrote.
var errJobRecord = errors.New("not a job record of this version")

// decodeJobRecord reads what encode wrote.
func decodeJobRecord(b []byte) (*jobRecord, error) {
	if len(b) < 2 || b[0] != jobRecordFormat {
		return nil, errJobRecord
	}
	d := recordDecoder{b: b[2:]}
	rec := &jobRecord{TLS: b[1]&1 != 0}
	rec.VerifiedAt = int64(d.uvarint())
	for _, s := range [...]*string{&rec.Method, &rec.URI, &rec.Host, &rec.RemoteAddr, &rec.Server, &rec.Body} {
		*s = d.string()
	}
	pairs := d.uvarint()
	if pairs > uint64(len(d.b)) { // every pair takes two bytes at least
		return nil, errJobRecord
	}
	rec.Header = make(http.Header, pairs)
	for range pairs {
		name := d.string()
		rec.Header[name] = append(rec.Header[name], d.string())
	}
	if d.failed || len(d.b) != 0 {
		return nil, errJobRecord
	}
	return rec, nil
}

// recordDecoder reads a record's fields; a read past its end sets failed.
type recordDecoder struct {
	b      []byte
	failed bool
}

func (d *recordDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.failed, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *recordDecoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.failed, d.b = true, nil
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// request rebuilds the request that was recorded.
func (rec *jobRecord) request(ctx context.Context) *http.Request {
	r := &http.Request{
		Method:     rec.Method,
		RequestURI: rec.URI,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        rec.Header,
		Host:          rec.Host,
		RemoteAddr:    rec.RemoteAddr,
		Body:          http.NoBody,
		ContentLength: int64(len(rec.Body)),
	}
	var err error
	if r.URL, err = url.ParseRequestURI(rec.URI); err != nil {
		r.URL = &url.URL{Path: "/"}
	}
	restoreBody(r, rec.Body, new(bodyReader))
	if rec.TLS {
		host, _, err := net.SplitHostPort(rec.Host)
		if err != nil {
			host = rec.Host
		}
		r.TLS = &tls.ConnectionState{HandshakeComplete: true, ServerName: host}
	}
	return r.WithContext(ctx)
}
