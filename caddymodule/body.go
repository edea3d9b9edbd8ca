package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

var errBodyTooLarge = errors.New("body is larger than max_body")

// readBody reads the whole body, at most limit bytes. A Content-Length over
// the limit is refused before reading anything; a chunked or lying body is
// cut off one byte past the limit.
//
// The body is read into one buffer, sized by Content-Length when there is
// one: one byte more than announced, so that the end of the body is seen
// without growing it. The buffer becomes the string returned.
func readBody(r *http.Request, limit int64) (string, error) {
	if r.ContentLength > limit {
		return "", errBodyTooLarge
	}
	for _, enc := range r.Header["Content-Encoding"] { // every line of it, not just the first
		if enc != "" && enc != "identity" {
			return "", fmt.Errorf("content encoding %q is not accepted", enc)
		}
	}
	size := int64(bytes.MinRead)
	if r.ContentLength >= 0 {
		size = r.ContentLength + 1
	}
	buf := make([]byte, 0, min(size, limit+1))
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(int64(cap(buf)), limit+1-int64(len(buf)))))
		}
		// Grow may round the capacity up past limit+1: never read into that.
		n, err := r.Body.Read(buf[len(buf):min(cap(buf), int(limit)+1)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return "", errBodyTooLarge
		}
		if err == io.EOF {
			// Nothing writes to buf after this: the string takes it
			// over, as strings.Builder's String does, instead of copying
			// the body. The message's strings are parts of it.
			// Benchmark: BenchmarkServeHTTPAccepted (BENCHMARKS.md, "Go benchmarks").
			return unsafe.String(unsafe.SliceData(buf), len(buf)), nil
		}
		if err != nil {
			return "", fmt.Errorf("reading body: %w", err)
		}
	}
}

// restoreBody gives the next handler the exact bytes that were read, through
// reader, with a Content-Length that matches them, whatever framing the
// client used.
func restoreBody(r *http.Request, body string, reader *bodyReader) {
	reader.Reset(body)
	r.Body = reader
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	var digits [20]byte
	length := strconv.AppendInt(digits[:0], int64(len(body)), 10)
	// Usually the client's Content-Length says so already.
	if values := r.Header["Content-Length"]; len(values) != 1 || values[0] != string(length) {
		r.Header.Set("Content-Length", string(length))
	}
	r.GetBody = func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(body)), nil
	}
}

// bodyReader is a restored body: a strings.Reader that closes, which
// io.NopCloser around a strings.Reader would take two allocations for.
type bodyReader struct{ strings.Reader }

// Close implements io.Closer; there is nothing to release.
func (*bodyReader) Close() error { return nil }
