package caddymodule

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis store keeps a job in two places:
//
//	<prefix>job:<id>  a hash: payload, holder (the token, in hex), attempts;
//	                  it expires after retain
//	<prefix>jobs      a sorted set of job ids, scored by when their lease
//	                  lapses, in milliseconds on Redis's clock
//
// Every operation is one Lua script, so it is atomic across all the Caddy
// instances on the Redis, and leases are judged on Redis's clock alone:
// the instances' clocks may disagree. TakeJobs finds the lapsed jobs with
// one range query on the sorted set, however many jobs run. The message's
// claim (its key, as Claim writes it) is taken with the job, renewed with
// it and settled with it: one round trip before DingTalk is acked, one per
// renewal, one when the job ends (BENCHMARKS.md, J).
//
// The scripts reach the job's hash by a name they build from the prefix,
// so the store needs a Redis that is not a cluster, as the claims do not.

// redisNowMillis is the Lua prologue that reads Redis's clock.
const redisNowMillis = `
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// recordJobScript claims the message, as Claim does, and records the job
// when the claim is the holder's.
// KEYS job hash, job set, claim (or none); ARGV payload, holder, lease ms, retain ms, id.
var recordJobScript = redis.NewScript(redisNowMillis + `
if KEYS[3] then
	local was = redis.call("SET", KEYS[3], ARGV[2], "NX", "PX", ARGV[3], "GET")
	if was and was ~= ARGV[2] then return 0 end
end
redis.call("HSET", KEYS[1], "payload", ARGV[1], "holder", ARGV[2], "attempts", 1)
redis.call("PEXPIRE", KEYS[1], ARGV[4])
redis.call("ZADD", KEYS[2], now + tonumber(ARGV[3]), ARGV[5])
return 1`)

// keepJobScript renews the job's lease and its message's claim.
// KEYS job hash, job set, claim (or none); ARGV holder, lease ms, id.
var keepJobScript = redis.NewScript(redisNowMillis + `
if redis.call("HGET", KEYS[1], "holder") ~= ARGV[1] then return 0 end
local lapses = redis.call("ZSCORE", KEYS[2], ARGV[3])
if not lapses or tonumber(lapses) <= now then return 0 end
redis.call("ZADD", KEYS[2], "XX", now + tonumber(ARGV[2]), ARGV[3])
if KEYS[3] and redis.call("GET", KEYS[3]) == ARGV[1] then
	redis.call("PEXPIRE", KEYS[3], ARGV[2])
end
return 1`)

// takeJobsScript: KEYS job set; ARGV holder, lease ms, n, job hash prefix.
// It answers id, attempts and payload of each job taken, one after another.
var takeJobsScript = redis.NewScript(redisNowMillis + `
local n = tonumber(ARGV[3])
local taken = {}
while #taken < 3 * n do
	local lapsed = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "LIMIT", 0, n - #taken / 3)
	if #lapsed == 0 then break end
	for _, id in ipairs(lapsed) do
		local job = ARGV[4] .. id
		local payload = redis.call("HGET", job, "payload")
		if payload then
			redis.call("HSET", job, "holder", ARGV[1])
			local attempts = redis.call("HINCRBY", job, "attempts", 1)
			redis.call("ZADD", KEYS[1], now + tonumber(ARGV[2]), id)
			table.insert(taken, id)
			table.insert(taken, attempts)
			table.insert(taken, payload)
		else
			redis.call("ZREM", KEYS[1], id) -- past its retention
		end
	end
end
return taken`)

// finishJobScript removes the job and settles its message's claim: kept
// for the de-duplication ttl when ttl ms is positive, released otherwise.
// KEYS job hash, job set, claim (or none); ARGV holder, id, ttl ms.
var finishJobScript = redis.NewScript(`
if redis.call("HGET", KEYS[1], "holder") == ARGV[1] then
	redis.call("DEL", KEYS[1])
	redis.call("ZREM", KEYS[2], ARGV[2])
end
if KEYS[3] and redis.call("GET", KEYS[3]) == ARGV[1] then
	if tonumber(ARGV[3]) > 0 then
		redis.call("PEXPIRE", KEYS[3], ARGV[3])
	else
		redis.call("DEL", KEYS[3])
	end
end
return 1`)

// handBackJobScript: KEYS job hash, job set; ARGV holder, id.
var handBackJobScript = redis.NewScript(`
if redis.call("HGET", KEYS[1], "holder") ~= ARGV[1] then return 0 end
redis.call("ZADD", KEYS[2], "XX", 0, ARGV[2])
return 1`)

// jobKeys returns the names of id's hash, of the job set and, when key is
// not empty, of the message's claim.
func (s *RedisStore) jobKeys(id, key string) []string {
	keys := []string{s.KeyPrefix + "job:" + id, s.KeyPrefix + "jobs"}
	if key != "" {
		keys = append(keys, s.KeyPrefix+key)
	}
	return keys
}

// RecordJob implements JobStore.
func (s *RedisStore) RecordJob(ctx context.Context, key string, job StoredJob, token Token, _ time.Time, lease, retain time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	held, err := recordJobScript.Run(ctx, s.ops, s.jobKeys(job.ID, key), job.Payload, token.String(), redisMillis(lease), redisMillis(retain), job.ID).Int()
	if err != nil {
		return false, fmt.Errorf("redis store: record job: %w", err)
	}
	return held == 1, nil
}

// KeepJob implements JobStore.
func (s *RedisStore) KeepJob(ctx context.Context, id, key string, token Token, _ time.Time, lease time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	held, err := keepJobScript.Run(ctx, s.ops, s.jobKeys(id, key), token.String(), redisMillis(lease), id).Int()
	if err != nil {
		return false, fmt.Errorf("redis store: keep job: %w", err)
	}
	return held == 1, nil
}

// TakeJobs implements JobStore.
func (s *RedisStore) TakeJobs(ctx context.Context, token Token, _ time.Time, lease time.Duration, n int) ([]StoredJob, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	keys := s.jobKeys("", "")
	reply, err := takeJobsScript.Run(ctx, s.ops, keys[1:], token.String(), redisMillis(lease), n, keys[0]).Slice()
	if err != nil {
		return nil, fmt.Errorf("redis store: take jobs: %w", err)
	}
	jobs := make([]StoredJob, 0, len(reply)/3)
	for i := 0; i+2 < len(reply); i += 3 {
		id, _ := reply[i].(string)
		attempts, _ := reply[i+1].(int64)
		payload, _ := reply[i+2].(string)
		jobs = append(jobs, StoredJob{ID: id, Attempts: int(attempts), Payload: []byte(payload)})
	}
	return jobs, nil
}

// FinishJob implements JobStore. A positive ttl is at least a millisecond.
func (s *RedisStore) FinishJob(ctx context.Context, id, key string, token Token, _ time.Time, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if ttl > 0 {
		ttl = max(ttl, time.Millisecond)
	}
	if err := finishJobScript.Run(ctx, s.ops, s.jobKeys(id, key), token.String(), id, ttl.Milliseconds()).Err(); err != nil {
		return fmt.Errorf("redis store: finish job: %w", err)
	}
	return nil
}

// HandBackJob implements JobStore.
func (s *RedisStore) HandBackJob(ctx context.Context, id string, token Token) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := handBackJobScript.Run(ctx, s.ops, s.jobKeys(id, ""), token.String(), id).Err(); err != nil {
		return fmt.Errorf("redis store: hand back job: %w", err)
	}
	return nil
}

// JobsOutliveProcess implements JobStore: another instance, or this one
// restarted, takes the jobs over. (Redis itself keeps them across its own
// restart only with persistence on: docs/redis.md.)
func (*RedisStore) JobsOutliveProcess() bool { return true }

// Interface guard
var _ JobStore = (*RedisStore)(nil)
