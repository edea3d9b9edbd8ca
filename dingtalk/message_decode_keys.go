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

// Positions of Message's keys: the order of its fields, in which
// messageKeys numbers them too (TestKeyPositions checks). A key's position
// is also its bit in messageDecoder.seen.
const (
	keyMsgType = iota
	keyMsgID
	keyText
	keyContent
	keyCreateAt
	keyConversationType
	keyConversationID
	keyConversationTitle
	keySenderID
	keySenderNick
	keySenderStaffID
	keySenderCorpID
	keySenderUnionID
	keySenderPlatform
	keySessionWebhook
	keySessionWebhookExpiredTime
	keyIsAdmin
	keyIsInAtList
	keyAtUsers
	keyChatbotCorpID
	keyChatbotUserID
	keyRobotCode

	keyCount   // how many keys Message has
	keyUnknown = -1
)

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
// (keyCount for the first), and returns it with its position.
func (d *messageDecoder) messageKey(prev int) (key string, k int, ok bool) {
	d.space()
	predicted := keyAfter[prev].Load()
	if q := quotedKeys[predicted]; strings.HasPrefix(d.s[d.i:], q) {
		d.i += len(q)
		return q[1 : len(q)-1], int(predicted), true
	}
	if key, ok = d.str(); !ok {
		return "", keyUnknown, false
	}
	if k, known := messageKeys[key]; known {
		return key, k, true
	}
	return key, keyUnknown, true
}

// learnKeyAfter records that the key at position k followed the one at prev.
// It writes only when the prediction changes, so that decoders on several
// cores share the table's cache line instead of taking it from each other.
func learnKeyAfter(prev, k int) {
	if keyAfter[prev].Load() != uint32(k) {
		keyAfter[prev].Store(uint32(k))
	}
}
