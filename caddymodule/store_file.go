package caddymodule

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(FileStore{})
}

// fileStores holds one open database per file, shared by every
// configuration of this process: bbolt locks its file, so a reload that
// opened it a second time would wait for the lock the first holds.
var fileStores = caddy.NewUsagePool()

// FileStore keeps claims in a file on this machine (a bbolt database), so
// that de-duplication, the replay guard and the claims of messages in flight
// survive a restart of a single Caddy instance without Redis. The file is
// locked while it is open: it serves one Caddy process, and every
// configuration of that process that names it.
type FileStore struct {
	// The database file. `{env.*}` placeholders are expanded when the
	// config is loaded. Default: `dingtalk/store.db` in Caddy's data
	// directory.
	Path string `json:"path,omitempty"`

	// Syncs every commit to the disk, so that even a power loss loses no
	// answered message and no job. Without it a crash of Caddy, however
	// abrupt, loses none either (they are in the operating system's cache
	// of the file before Caddy goes on); only a crash of the whole machine
	// can lose the last seconds of changes, or leave a file that is then
	// set aside and replaced by an empty one. It bounds the callbacks per
	// second by the disk's syncs (BENCHMARKS.md). Default: off.
	Fsync bool `json:"fsync,omitempty"`

	// The most keys remembered at once, as the memory store's: when full,
	// the oldest eighth is forgotten, the newest seven eighths are always
	// remembered. They are looked up in memory, about 45 bytes each, taken
	// when the file is opened, and filled again from the file at start. The
	// file's open database keeps the number it was opened with: a reload
	// that changes it takes effect when Caddy restarts. Default: 100000.
	MaxEntries int `json:"max_entries,omitempty"`

	db      *fileDB
	poolKey string
}

// CaddyModule returns the Caddy module information.
func (FileStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "dingtalk.stores.file",
		New: func() caddy.Module { return new(FileStore) },
	}
}

// Provision opens the file, or attaches to the database this process
// already opened from it.
func (s *FileStore) Provision(ctx caddy.Context) error {
	path, err := s.path()
	if err != nil {
		return err
	}
	if s.MaxEntries < 0 {
		return fmt.Errorf("file store: max_entries must not be negative")
	}
	if s.MaxEntries == 0 {
		s.MaxEntries = defaultMaxEntries
	}
	s.poolKey = "file/" + path
	db, loaded, err := fileStores.LoadOrNew(s.poolKey, func() (caddy.Destructor, error) {
		return openFileDB(path, s.Fsync, s.MaxEntries, ctx.Logger())
	})
	if err != nil {
		return err
	}
	s.db = db.(*fileDB)
	if loaded && s.db.maxEntries != s.MaxEntries {
		ctx.Logger().Warn("dingtalk file store: a new max_entries takes effect when Caddy restarts; the open file keeps its number",
			zap.String("path", path), zap.Int("max_entries", s.MaxEntries), zap.Int("in_effect", s.db.maxEntries))
	}
	if loaded {
		// A reload that turned fsync on or off: the file has one
		// setting, the newest configuration's.
		return s.db.setFsync(s.Fsync)
	}
	return nil
}

// path is the database file's absolute path, placeholders expanded.
func (s *FileStore) path() (string, error) {
	path := s.Path
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "dingtalk", "store.db")
	}
	path, err := caddy.NewReplacer().ReplaceOrErr(path, true, true)
	if err != nil {
		return "", fmt.Errorf("file store: the path's placeholder cannot be expanded: %v", err)
	}
	if path, err = filepath.Abs(path); err != nil {
		return "", fmt.Errorf("file store: %v", err)
	}
	return path, nil
}

// Cleanup drops this configuration's reference to the database; the last
// one closes it, after the writes already asked for.
func (s *FileStore) Cleanup() error {
	if s.poolKey == "" {
		return nil
	}
	_, err := fileStores.Delete(s.poolKey)
	return err
}

// retain implements retainer: the file stays open until release.
func (s *FileStore) retain() (release func()) { return retainPooled(fileStores, s.poolKey) }

// The claims are looked up in memory, in a table like the memory store's
// that the file fills again when it is opened; the file is a log of the
// changes, in the order they were made.
//
// Keep, which turns a message's lease into the record that it was answered
// (and renews leases), returns once its change is committed, and so once
// every change before it is: what was answered survives any crash of
// Caddy. Claim and Release hand their change to the writer and return
// without waiting for the commit. A crash can lose such a change only with
// its holder: a lease that would have lapsed anyway, or a release whose
// key's lease then lapses on its own. So a message in flight does not wait
// for the disk before it is passed on (BENCHMARKS.md, the file store).

// Claim implements Store.
func (s *FileStore) Claim(_ context.Context, key string, token Token, now time.Time, ttl time.Duration) (bool, error) {
	held, took := s.db.table.take(key, token, sinceClockStart(now), ttl)
	if took {
		if err := s.db.log(logClaim, key, token, now.Add(ttl), false); err != nil {
			return false, fmt.Errorf("file store: claim: %w", err)
		}
	}
	return held, nil
}

// Keep implements Store.
func (s *FileStore) Keep(_ context.Context, key string, token Token, now time.Time, ttl time.Duration) error {
	if !s.db.table.keep(key, token, sinceClockStart(now), ttl) {
		return nil
	}
	if err := s.db.log(logClaim, key, token, now.Add(ttl), true); err != nil {
		return fmt.Errorf("file store: keep: %w", err)
	}
	return nil
}

// Release implements Store.
func (s *FileStore) Release(_ context.Context, key string, token Token) error {
	if !s.db.table.release(key, token) {
		return nil
	}
	if err := s.db.log(logRelease, key, token, time.Now(), false); err != nil {
		return fmt.Errorf("file store: release: %w", err)
	}
	return nil
}

// Interface guards
var (
	_ Store              = (*FileStore)(nil)
	_ caddy.Provisioner  = (*FileStore)(nil)
	_ retainer           = (*FileStore)(nil)
	_ caddy.CleanerUpper = (*FileStore)(nil)
	_ caddy.Destructor   = (*fileDB)(nil)
)

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store file {
//	    path <file>
//	    fsync on|off
//	    max_entries <n>
//	}
//
// All are optional: `store file` alone keeps its file in Caddy's data
// directory. Unknown and repeated subdirectives are errors.
func (s *FileStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the backend's name
	return eachSubdirectiveOnce(d, map[string]bool{}, func(sub string) (err error) {
		switch sub {
		case "path":
			s.Path, err = singleArg(d)
		case "fsync":
			s.Fsync, err = onOffArg(d)
		case "max_entries":
			s.MaxEntries, err = countArg(d, 1)
		default:
			return d.Errf("unrecognized file store subdirective %q", sub)
		}
		return err
	})
}

// Interface guard
var _ caddyfile.Unmarshaler = (*FileStore)(nil)
