package caddymodule

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// fileDB is one open database file, shared by the configurations that name
// it.
//
// Claims are decided in memory, in a table like the memory store's, and
// written down in the file as a log of changes ("key held by token until
// t", "key released by token") under increasing sequence numbers, which
// the table is filled again from when the file is opened. A log, rather
// than one record per key: bbolt rewrites every page a transaction changed,
// and keys that are msgIds would change a page each, where appended
// records share the last one (BenchmarkFileStoreClaimParallel: about 26
// cpu-µs per claim stored by key, 6 appended).
//
// One writer commits every write handed to it meanwhile in one
// transaction, and the sweeper deletes the log's head once it expired.
type fileDB struct {
	db         *bolt.DB
	table      *memoryTable
	maxEntries int // the table's bound
	logger     *zap.Logger

	mu     sync.RWMutex // held to hand a write over; taken to stop taking them
	closed bool
	writes chan *fileWrite
	writer sync.WaitGroup

	stop    chan struct{} // ends the sweeper
	stopped chan struct{} // closed by the sweeper when it ended
}

// The file's buckets.
var (
	logBucket   = []byte("log") // sequence number → logRecord
	fileBuckets = [][]byte{logBucket, jobsBucket}
)

// openFileDB opens the database at path, creating it and its folder when
// they are absent, fills the claims table from its log, and starts its
// writer and its sweeper. A file that is not a database it can read (which
// a power loss without fsync can leave) is set aside, named in an ERROR
// line, and replaced by an empty one: as a restart with the memory store
// would, rather than a gateway that does not start.
func openFileDB(path string, fsync bool, maxEntries int, logger *zap.Logger) (*fileDB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("file store: %v", err)
	}
	opts := &bolt.Options{
		// Another process holding the file fails the config load, naming
		// the file, rather than waiting for ever.
		Timeout: fileLockTimeout,
		NoSync:  !fsync,
		// The free pages are found again when the file is opened rather
		// than written with every change.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	}
	db, err := bolt.Open(path, 0o600, opts)
	if errors.Is(err, bolt.ErrInvalid) || errors.Is(err, bolt.ErrChecksum) {
		aside := fmt.Sprintf("%s.damaged-%d", path, time.Now().Unix())
		if renameErr := os.Rename(path, aside); renameErr != nil {
			return nil, fmt.Errorf("file store %s cannot be read (%v) nor set aside: %v", path, err, renameErr)
		}
		logger.Error("dingtalk file store could not be read; set it aside and started an empty one",
			zap.String("path", path), zap.String("set_aside", aside), zap.Error(err))
		db, err = bolt.Open(path, 0o600, opts)
	}
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("file store %s is locked by another process (another Caddy?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("file store %s: %v", path, err)
	}
	f := &fileDB{
		db:         db,
		table:      newMemoryTable(maxEntries),
		maxEntries: maxEntries,
		logger:     logger,
		writes:     make(chan *fileWrite, maxFileBatch),
		stop:       make(chan struct{}),
		stopped:    make(chan struct{}),
	}
	if err := f.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("file store %s: %v", path, err)
	}
	f.writer.Add(1)
	go f.write()
	go f.sweepEvery(fileSweepInterval)
	return f, nil
}

// fileLockTimeout is how long opening a file waits for another process's lock.
const fileLockTimeout = 2 * time.Second

// load creates the buckets of a new file and replays the log into the table.
func (f *fileDB) load() error {
	if err := f.db.Update(func(tx *bolt.Tx) error {
		for _, name := range fileBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return f.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(logBucket).ForEach(func(_, v []byte) error {
			r, ok := readLogRecord(v)
			switch {
			case !ok:
				return errors.New("a record of the claims log is damaged")
			case r.kind == logClaim:
				f.table.put(string(r.key), r.token, sinceClockStart(time.Unix(0, r.expires)))
			case r.kind == logRelease:
				f.table.release(string(r.key), r.token)
			}
			return nil
		})
	})
}

// The kinds of log records.
const (
	logClaim   byte = 'c' // key is held by token until expires (taken or kept)
	logRelease byte = 'r' // token let key go
)

// logRecord is one change to the claims. Stored: the kind, when it stops
// mattering (Unix nanoseconds, big-endian: a claim's expiry, a release's
// own time), the token and the key.
type logRecord struct {
	kind    byte
	expires int64
	token   Token
	key     []byte
}

const logHeader = 1 + 8 + len(Token{})

func readLogRecord(v []byte) (logRecord, bool) {
	if len(v) < logHeader || v[0] != logClaim && v[0] != logRelease {
		return logRecord{}, false
	}
	return logRecord{kind: v[0], expires: int64(binary.BigEndian.Uint64(v[1:])), token: Token(v[9:logHeader]), key: v[logHeader:]}, true
}

// log writes a change of the claims down in the file. With wait it returns
// once the change is committed; without, once the writer has it, and the
// writer logs an error that the change meets.
func (f *fileDB) log(kind byte, key string, token Token, expires time.Time, wait bool) error {
	w := &fileWrite{record: newLogRecord(kind, key, token, expires)}
	if wait {
		w.done = make(chan error, 1)
	}
	return f.submit(w)
}

// newLogRecord encodes a change of the claims, its first 8 bytes left for
// its sequence number: one allocation for both, which bbolt keeps until
// the transaction is committed.
func newLogRecord(kind byte, key string, token Token, expires time.Time) []byte {
	buf := make([]byte, 8+logHeader+len(key))
	rec := buf[8:]
	rec[0] = kind
	binary.BigEndian.PutUint64(rec[1:], uint64(expires.UnixNano()))
	copy(rec[9:], token[:])
	copy(rec[logHeader:], key)
	return buf
}

// appendLog appends record (from newLogRecord) to the log in tx.
func appendLog(tx *bolt.Tx, record []byte) error {
	log := tx.Bucket(logBucket)
	log.FillPercent = 1 // only ever appended to: fill its pages
	seq, err := log.NextSequence()
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint64(record, seq)
	return log.Put(record[:8], record[8:])
}

// fileWrite is one write waiting for its transaction: a log record (its
// first 8 bytes left for its sequence number), or a function. done gets
// its result; nil when nobody waits for it.
type fileWrite struct {
	record []byte
	fn     func(*bolt.Tx) error
	done   chan error
}

// update runs fn in a write transaction and returns once it is committed.
// fn may run twice: when a transaction of several writes fails, each is
// run again alone, so that one write's error is not another's.
func (f *fileDB) update(fn func(*bolt.Tx) error) error {
	return f.submit(&fileWrite{fn: fn, done: make(chan error, 1)})
}

// submit hands w to the writer, in order, and waits for its commit if
// anyone does.
func (f *fileDB) submit(w *fileWrite) error {
	f.mu.RLock()
	if f.closed {
		f.mu.RUnlock()
		return errFileStoreClosed
	}
	f.writes <- w
	f.mu.RUnlock()
	if w.done == nil {
		return nil
	}
	return <-w.done
}

// setFsync makes the commits from now on sync the file, or not. The writer
// makes the change: bbolt reads the setting when it commits.
func (f *fileDB) setFsync(fsync bool) error {
	return f.update(func(*bolt.Tx) error {
		f.db.NoSync = !fsync
		return nil
	})
}

// errFileStoreClosed answers a write asked for after the file was closed.
var errFileStoreClosed = errors.New("the file store is closed")

// maxFileBatch bounds how many writes one transaction commits.
const maxFileBatch = 256

// write commits the writes handed over, until the channel is closed.
//
// A transaction costs about the same for one write as for many, so the
// writer gathers those asked for meanwhile. Having taken the first, it
// yields once, so that the callbacks running beside it reach their writes
// too: on two cores, without it, most transactions held one or two writes;
// with it about twelve (BenchmarkFileStoreClaimParallel). Unlike bbolt's
// own Batch, nothing waits on a timer: a lone write is committed at once.
func (f *fileDB) write() {
	defer f.writer.Done()
	batch := make([]*fileWrite, 0, maxFileBatch)
	for w := range f.writes {
		batch = append(batch[:0], w)
		runtime.Gosched()
	gather:
		for len(batch) < cap(batch) {
			select {
			case w, ok := <-f.writes:
				if !ok {
					break gather
				}
				batch = append(batch, w)
			default:
				break gather
			}
		}
		f.commit(batch)
	}
}

// commit runs batch in one transaction, or each write alone when that fails.
func (f *fileDB) commit(batch []*fileWrite) {
	err := f.db.Update(func(tx *bolt.Tx) error {
		for _, w := range batch {
			if err := w.apply(tx); err != nil {
				return err
			}
		}
		return nil
	})
	for _, w := range batch {
		werr := err
		if err != nil && len(batch) > 1 {
			werr = f.db.Update(w.apply)
		}
		switch {
		case w.done != nil:
			w.done <- werr
		case werr != nil:
			f.logger.Error("writing a claim to the dingtalk file store", zap.Error(werr))
		}
	}
}

// apply does w in tx.
func (w *fileWrite) apply(tx *bolt.Tx) error {
	if w.fn != nil {
		return w.fn(tx)
	}
	return appendLog(tx, w.record)
}

// How the log is kept short: every fileSweepInterval, the sweeper deletes
// the records at its head that stopped mattering, in passes of at most
// fileSweepBatch records, until it meets one that still matters. A pass is
// a read transaction, which does not hold up the writer, and one write.
// Records are deleted only from the head, so a release is never deleted
// before the claim it ended; the log holds at most the longest ttl
// (dedupe_ttl) of changes.
const (
	fileSweepInterval = time.Minute
	fileSweepBatch    = 1000
)

// sweepEvery sweeps the log once per interval until the file is closed.
func (f *fileDB) sweepEvery(interval time.Duration) {
	defer close(f.stopped)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-ticker.C:
		}
		for more := true; more; {
			select {
			case <-f.stop:
				return
			default:
			}
			var err error
			if _, more, err = f.sweep(time.Now(), fileSweepBatch); err != nil {
				f.logger.Warn("forgetting expired claims in the dingtalk file store", zap.Error(err))
				break
			}
		}
	}
}

// sweep is one pass: it deletes at most limit records from the log's head
// that stopped mattering by now. It reports how many it deleted, and
// whether the next record may have stopped mattering too.
func (f *fileDB) sweep(now time.Time, limit int) (deleted int, more bool, err error) {
	at := now.UnixNano()
	var expired [][]byte
	err = f.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(logBucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if r, ok := readLogRecord(v); ok && r.expires > at {
				return nil // still matters: the head stops here
			}
			if len(expired) == limit {
				more = true
				return nil
			}
			expired = append(expired, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil || len(expired) == 0 {
		return 0, false, err
	}
	err = f.update(func(tx *bolt.Tx) error {
		log := tx.Bucket(logBucket)
		for _, k := range expired {
			if err := log.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return len(expired), more, nil
}

// Destruct implements caddy.Destructor: it stops the sweeper, commits the
// writes already handed over, refuses later ones, and closes the file.
func (f *fileDB) Destruct() error {
	close(f.stop)
	<-f.stopped // the sweeper writes through the writer
	f.mu.Lock()
	f.closed = true
	close(f.writes)
	f.mu.Unlock()
	f.writer.Wait()
	return f.db.Close()
}
