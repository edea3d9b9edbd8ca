package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// secret signs every callback the harness sends.
const secret = "this is a secret"

// idDigits is how many trailing characters of each msgId are a counter.
const idDigits = 12

var (
	// runID makes this run's msgIds unlike any other run's.
	runID = func() string {
		var b [4]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}()
	// sent numbers the msgIds: every request of the run has its own.
	sent atomic.Uint64
)

// callback is the wire form of a signed callback POST: a realistic group
// text message built and signed by dingtalktest. Its msgId ends in idDigits
// digits that every send overwrites with a fresh number, and its timestamp
// and sign are those of the millisecond it is sent in, as DingTalk signs
// each callback, so that a connection sends a new, correctly signed message
// each time without building anything.
type callback struct {
	wire   []byte
	idEnd  int // where the msgId's counter ends in wire
	tsAt   int // where the timestamp header's value starts in wire
	signAt int // where the sign header's value starts in wire
	signs  signTable
	// ownTimes gives each callback the next millisecond of signs instead
	// of the one it is sent in, as DingTalk's callbacks at a usual rate each
	// have their own: the replay guard then remembers a pair per callback.
	ownTimes bool
	stamped  atomic.Int64 // with ownTimes: callbacks stamped so far
}

// newCallback prepares callbacks to addr signed with signs;
// sessionWebhook is where an async reply goes ("" for DingTalk's, which is
// never contacted).
func newCallback(addr, sessionWebhook string, signs signTable) (*callback, error) {
	msgID := fmt.Sprintf("msgLoad%s%0*d", runID, idDigits, 0)
	body := dingtalktest.Callback{Text: "hello robot", Group: true, MsgID: msgID, SessionWebhook: sessionWebhook}.Body()
	now := time.Now()
	req, err := dingtalktest.NewRequest("http://"+addr+"/robot", secret, body, now)
	if err != nil {
		return nil, err
	}
	var wire bytes.Buffer
	if err := req.Write(&wire); err != nil {
		return nil, err
	}
	cb := &callback{wire: wire.Bytes(), signs: signs}
	at := bytes.LastIndex(cb.wire, []byte(msgID))
	if at < 0 {
		return nil, fmt.Errorf("msgId not found in the request")
	}
	cb.idEnd = at + len(msgID)
	ts, sign := req.Header.Get(dingtalk.HeaderTimestamp), req.Header.Get(dingtalk.HeaderSign)
	cb.tsAt = bytes.Index(cb.wire, []byte("\r\nTimestamp: "+ts+"\r\n")) + len("\r\nTimestamp: ")
	cb.signAt = bytes.Index(cb.wire, []byte("\r\nSign: "+sign+"\r\n")) + len("\r\nSign: ")
	if len(ts) != timestampDigits || cb.tsAt < len("\r\nTimestamp: ") || cb.signAt < len("\r\nSign: ") {
		return nil, fmt.Errorf("timestamp or sign header not found in the request")
	}
	return cb, nil
}

// timestampDigits is the length of a millisecond timestamp until 2286.
const timestampDigits = 13

// millisecond is the time a callback sent at now is signed for.
func (cb *callback) millisecond(now time.Time) int64 {
	if cb.ownTimes {
		return cb.signs.start + cb.stamped.Add(1) - 1
	}
	return now.UnixMilli()
}

// stamp writes the timestamp of millisecond ms and its sign into wire, a
// copy of cb.wire.
func (cb *callback) stamp(wire []byte, ms int64) {
	var digits [timestampDigits]byte
	copy(wire[cb.tsAt:], strconv.AppendInt(digits[:0], ms, 10))
	copy(wire[cb.signAt:], cb.signs.sign(ms))
}

// signTable holds the sign of every millisecond of a load run, computed
// before it starts: signing costs the load generator a copy.
type signTable struct {
	start int64 // the first millisecond
	signs []string
}

// newSignTable signs the n milliseconds from start on.
func newSignTable(start time.Time, n int) signTable {
	t := signTable{start: start.UnixMilli(), signs: make([]string, n)}
	for i := range t.signs {
		t.signs[i] = dingtalk.Sign(secret, strconv.FormatInt(t.start+int64(i), 10))
	}
	return t
}

// sign returns the sign of millisecond ms, computing it if the run outlasts the table.
func (t signTable) sign(ms int64) string {
	if i := ms - t.start; i >= 0 && i < int64(len(t.signs)) {
		return t.signs[i]
	}
	return dingtalk.Sign(secret, strconv.FormatInt(ms, 10))
}

// setCounter writes n in decimal into digits, right-aligned with zeros.
func setCounter(digits []byte, n uint64) {
	for i := len(digits) - 1; i >= 0; i-- {
		digits[i] = byte('0' + n%10)
		n /= 10
	}
}

// loadPlan is how long or how much load to send.
type loadPlan struct {
	conns   int
	warmup  time.Duration // sent but not measured
	measure time.Duration // the measured period
	// requests, when set instead of the durations, sends that many and
	// measures them all.
	requests int64
	// mark, when set, is called as the measured period starts and as it ends.
	mark func()
	// answer is the body every 2xx answer must have: only such an answer
	// counts; any other 2xx is counted as wrong.
	answer []byte
}

// loadResult is what the client saw in the measured period.
type loadResult struct {
	elapsed   time.Duration
	ok        int64           // 2xx answers with the expected body
	others    map[int]int64   // answers by status, other than 2xx
	errors    int64           // connection failures; the connection is opened again
	latencies []time.Duration // of the expected answers, sorted
	acked     int64           // expected answers including the warm-up
	wrong     int64           // 2xx answers with another body, including the warm-up
	wrongBody string          // the first of them
}

// rate is the expected answers per second.
func (r loadResult) rate() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// Phases of a load run.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// connStats is one connection's share of a loadResult.
type connStats struct {
	ok, errors, acked, wrong int64
	wrongBody                string
	others                   map[int]int64
	latencies                []time.Duration
}

// runLoad sends cb to addr over plan.conns keep-alive connections, each
// sending its next request as soon as the previous answer is read.
func runLoad(ctx context.Context, addr string, cb *callback, plan loadPlan) loadResult {
	var phase atomic.Int32
	var issued atomic.Int64
	if plan.requests > 0 {
		phase.Store(phaseMeasure)
	}
	defer context.AfterFunc(ctx, func() { phase.Store(phaseStop) })()
	stats := make([]connStats, plan.conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range stats {
		wg.Go(func() {
			stats[i] = sendLoop(addr, cb, plan.answer, &phase, func() bool {
				return plan.requests == 0 || issued.Add(1) <= plan.requests
			})
		})
	}

	var elapsed time.Duration
	if plan.requests > 0 {
		wg.Wait()
		elapsed = time.Since(start)
	} else {
		sleep(ctx, plan.warmup)
		if plan.mark != nil {
			plan.mark()
		}
		measured := time.Now()
		phase.Store(phaseMeasure)
		sleep(ctx, plan.measure)
		phase.Store(phaseStop)
		elapsed = time.Since(measured)
		if plan.mark != nil {
			plan.mark()
		}
		wg.Wait()
	}

	res := loadResult{elapsed: elapsed, others: map[int]int64{}}
	for _, s := range stats {
		res.ok += s.ok
		res.errors += s.errors
		res.acked += s.acked
		res.wrong += s.wrong
		if res.wrongBody == "" {
			res.wrongBody = s.wrongBody
		}
		for status, n := range s.others {
			res.others[status] += n
		}
		res.latencies = append(res.latencies, s.latencies...)
	}
	slices.Sort(res.latencies)
	return res
}

// sendLoop is one connection: it sends while more is wanted and the run is
// not stopped, and records the answers that arrive in the measured period.
// A 2xx answer counts only when its body is answer.
func sendLoop(addr string, cb *callback, answer []byte, phase *atomic.Int32, more func() bool) connStats {
	s := connStats{others: map[int]int64{}, latencies: make([]time.Duration, 0, 1<<14)}
	var body bytes.Buffer
	wire := slices.Clone(cb.wire)
	digits := wire[cb.idEnd-idDigits : cb.idEnd]
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	var signed int64 // the millisecond wire is signed for
	for phase.Load() != phaseStop && more() {
		if conn == nil {
			var err error
			if conn, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
				s.errors++
				time.Sleep(100 * time.Millisecond)
				continue
			}
			br = bufio.NewReader(conn)
		}
		setCounter(digits, sent.Add(1))
		began := time.Now()
		if ms := cb.millisecond(began); ms != signed {
			cb.stamp(wire, ms)
			signed = ms
		}
		status, keep, err := roundTrip(conn, br, wire, &body, began.Add(30*time.Second))
		took := time.Since(began)
		if err != nil {
			s.errors++
			conn.Close()
			conn = nil
			continue
		}
		ok := status >= 200 && status <= 299
		wrong := ok && !bytes.Equal(body.Bytes(), answer)
		switch {
		case wrong:
			if s.wrong++; s.wrongBody == "" {
				s.wrongBody = fmt.Sprintf("HTTP %d %.200q", status, body.Bytes())
			}
		case ok:
			s.acked++
		}
		if !wrong && phase.Load() == phaseMeasure {
			if ok {
				s.ok++
				s.latencies = append(s.latencies, took)
			} else {
				s.others[status]++
			}
		}
		if !keep {
			conn.Close()
			conn = nil
		}
	}
	return s
}

// roundTrip writes one request and reads its whole answer, its body into body.
func roundTrip(conn net.Conn, br *bufio.Reader, wire []byte, body *bytes.Buffer, deadline time.Time) (status int, keepAlive bool, err error) {
	if err := conn.SetDeadline(deadline); err != nil {
		return 0, false, err
	}
	if _, err := conn.Write(wire); err != nil {
		return 0, false, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, err
	}
	body.Reset()
	_, err = body.ReadFrom(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, !resp.Close, err
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
