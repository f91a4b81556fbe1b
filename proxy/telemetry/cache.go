package telemetry

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
)

// seriesCache maps a comparable label tuple to resolved metric children.
//
// Reads are lock-free lookups in an immutable snapshot keyed by a 64-bit
// hash of the tuple, with collisions resolved by comparing whole tuples.
// The caller computes the hash by copying the tuple's strings into one
// stack buffer and hashing that once (see reqKey.hash): about 40 ns for a
// typical tuple, where a map keyed by the struct costs 65 ns (ten string
// hashes) and sync.Map 100 ns (reflective hashing of interface keys).
//
// Misses take a mutex, consult the complete map and publish a fresh
// snapshot once the misses since the last one add up to the snapshot's
// size, so copying costs O(1) amortised per miss. Entries are never
// removed.
type seriesCache[K comparable, V any] struct {
	read   atomic.Pointer[map[uint64][]cacheEntry[K, V]]
	mu     sync.Mutex
	all    map[uint64][]cacheEntry[K, V] // every entry; guarded by mu
	n      int                           // entries in all
	misses int                           // lookups that missed read since it was published
}

type cacheEntry[K comparable, V any] struct {
	k K
	v V
}

// get returns the value for k, whose hash is h, creating it with
// mk(arg, k) on first use. mk runs with the cache's mutex held and must not
// call back into the cache.
func (c *seriesCache[K, V]) get(h uint64, k K, arg *Metrics, mk func(*Metrics, K) V) V {
	if r := c.read.Load(); r != nil {
		es := (*r)[h]
		for i := range es {
			if es[i].k == k {
				return es[i].v
			}
		}
	}
	return c.slow(h, k, arg, mk)
}

func (c *seriesCache[K, V]) slow(h uint64, k K, arg *Metrics, mk func(*Metrics, K) V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.all == nil {
		c.all = make(map[uint64][]cacheEntry[K, V])
	}
	var v V
	found := false
	for _, e := range c.all[h] {
		if e.k == k {
			v, found = e.v, true
			break
		}
	}
	if !found {
		v = mk(arg, k)
		// Clip so that append never writes into an array a published
		// snapshot shares.
		c.all[h] = append(slices.Clip(c.all[h]), cacheEntry[K, V]{k, v})
		c.n++
	}
	c.misses++
	if r := c.read.Load(); r == nil || c.misses >= len(*r) {
		snap := make(map[uint64][]cacheEntry[K, V], len(c.all))
		for h, es := range c.all {
			snap[h] = slices.Clip(es)
		}
		c.read.Store(&snap)
		c.misses = 0
	}
	return v
}

// size reports the number of cached tuples.
func (c *seriesCache[K, V]) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// hashBufSize bounds the stack buffer the key hashes copy into; longer
// tuples are hashed field by field.
const hashBufSize = 256

// hash returns the hash of k under seed. Every field is followed by a 0
// byte so that ("ab","c") and ("a","bc") differ; a collision is harmless
// anyway (tuples are compared whole).
func (k *reqKey) hash(seed maphash.Seed) uint64 {
	n := len(k.dir) + len(k.service) + len(k.grpc) + len(k.proto) +
		len(k.peer.Name) + len(k.peer.Namespace) + len(k.peer.Cluster) + len(k.peer.Locality) + 16
	if n > hashBufSize {
		var h maphash.Hash
		h.SetSeed(seed)
		for _, s := range [...]string{k.dir, k.service, k.grpc, k.proto, k.peer.Name, k.peer.Namespace, k.peer.Cluster, k.peer.Locality} {
			h.WriteString(s)
			h.WriteByte(0)
		}
		c := uint64(k.code)
		for range 8 {
			h.WriteByte(byte(c))
			c >>= 8
		}
		return h.Sum64()
	}
	var buf [hashBufSize]byte
	b := buf[:0]
	b = append(append(b, k.dir...), 0)
	b = append(append(b, k.service...), 0)
	b = append(append(b, k.grpc...), 0)
	b = append(append(b, k.proto...), 0)
	b = append(append(b, k.peer.Name...), 0)
	b = append(append(b, k.peer.Namespace...), 0)
	b = append(append(b, k.peer.Cluster...), 0)
	b = append(append(b, k.peer.Locality...), 0)
	c := uint64(k.code)
	b = append(b, byte(c), byte(c>>8), byte(c>>16), byte(c>>24), byte(c>>32), byte(c>>40), byte(c>>48), byte(c>>56))
	return maphash.Bytes(seed, b)
}

func (k *connKey) hash(seed maphash.Seed) uint64 {
	if len(k.listener)+len(k.direction)+2 > hashBufSize {
		var h maphash.Hash
		h.SetSeed(seed)
		h.WriteString(k.listener)
		h.WriteByte(0)
		h.WriteString(k.direction)
		return h.Sum64()
	}
	var buf [hashBufSize]byte
	b := append(append(buf[:0], k.listener...), 0)
	b = append(b, k.direction...)
	return maphash.Bytes(seed, b)
}
