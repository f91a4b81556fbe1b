package xds

import (
	"hash/maphash"
	"runtime"
	"slices"
	"sync"
	"weak"
)

// subSet is the names a delta stream subscribes to for one type: sorted,
// without duplicates, never modified once made. Sidecars of one class
// subscribe to the same names, so subTable makes streams with equal sets
// share one: 1,000 streams of 1,000 names hold one slice, not 1,000 maps.
type subSet struct {
	names []string
}

func (s *subSet) has(name string) bool {
	if s == nil {
		return false
	}
	_, ok := slices.BinarySearch(s.names, name)
	return ok
}

// subTable interns subSets by content; a set no stream holds any more is
// collected (weak pointers) and its entry removed by a cleanup.
//
// Concurrency: safe for concurrent use (its own mutex, so streams may
// intern while holding the cache's read lock).
type subTable struct {
	seed maphash.Seed
	mu   sync.Mutex
	m    map[uint64]weak.Pointer[subSet]
}

func newSubTable() *subTable {
	return &subTable{seed: maphash.MakeSeed(), m: map[uint64]weak.Pointer[subSet]{}}
}

// intern returns the shared set of names (sorted, unique; the table keeps
// the slice, the caller must not modify it). A hash collision between two
// different sets leaves the second one unshared, never wrong.
func (t *subTable) intern(names []string) *subSet {
	var h maphash.Hash
	h.SetSeed(t.seed)
	for _, n := range names {
		h.WriteString(n)
		h.WriteByte(0)
	}
	key := h.Sum64()
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.m[key].Value(); s != nil {
		if slices.Equal(s.names, names) {
			return s
		}
		return &subSet{names: names}
	}
	s := &subSet{names: names}
	t.m[key] = weak.Make(s)
	runtime.AddCleanup(s, t.forget, key)
	return s
}

func (t *subTable) forget(key uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[key].Value() == nil {
		delete(t.m, key)
	}
}

// applySub is old with add subscribed and drop unsubscribed: the new
// sorted set and the names that were not in old (sorted). add's strings
// are kept as given (the caller interns them).
func applySub(old *subSet, add, drop []string) (names, added []string) {
	for _, n := range add {
		if !old.has(n) {
			added = append(added, n)
		}
	}
	slices.Sort(added)
	added = slices.Compact(added)
	var oldNames []string
	if old != nil {
		oldNames = old.names
	}
	if len(drop) > 0 {
		drop = slices.Clone(drop)
		slices.Sort(drop)
	}
	names = make([]string, 0, len(oldNames)+len(added))
	i, j := 0, 0
	for i < len(oldNames) || j < len(added) {
		switch {
		case j == len(added) || (i < len(oldNames) && oldNames[i] < added[j]):
			if _, gone := slices.BinarySearch(drop, oldNames[i]); !gone {
				names = append(names, oldNames[i])
			}
			i++
		default:
			if _, gone := slices.BinarySearch(drop, added[j]); !gone {
				names = append(names, added[j])
			}
			j++
		}
	}
	return names, added
}
