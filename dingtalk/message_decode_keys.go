package dingtalk

import (
	"strings"
	"sync/atomic"
)

// The decoder's key prediction. A serializer writes the keys of one type in
// the same order every time, and DingTalk's callbacks come from one. So the
// decoder remembers which of Message's keys followed each one last time, and
// at the next key compares that key first: one comparison of known length,
// instead of scanning the key for its end and then looking it up. A
// prediction that fails costs that comparison, and the key is read as any
// other; what is decoded never depends on the prediction.

// keyCount is the number of Message's keys; messageKeys gives each its
// position, which is also its bit in messageDecoder.seen.
var keyCount = len(messageKeys)

// keyAfter holds, for each position, the position of the key that followed
// it last time; at keyCount, the first key's. It is shared by all decoders.
var keyAfter = make([]atomic.Uint32, keyCount+1)

// quotedKeys are Message's keys with their quotes, by position.
var quotedKeys = func() []string {
	q := make([]string, keyCount)
	for name, i := range messageKeys {
		q[i] = `"` + name + `"`
	}
	return q
}()

// messageKey reads a top-level key that follows the key at position prev
// (keyCount for the first).
func (d *messageDecoder) messageKey(prev int) (string, bool) {
	d.space()
	if q := quotedKeys[keyAfter[prev].Load()]; strings.HasPrefix(d.s[d.i:], q) {
		d.i += len(q)
		return q[1 : len(q)-1], true
	}
	return d.str()
}

// learnKeyAfter records that the key at position k followed the one at prev.
// It writes only when the prediction changes, so that decoders on several
// cores share the table's cache line instead of taking it from each other.
func learnKeyAfter(prev, k int) {
	if keyAfter[prev].Load() != uint32(k) {
		keyAfter[prev].Store(uint32(k))
	}
}
