package lb

import (
	"cmp"
	"math"
	"slices"
	"strconv"
)

// Hashing of host keys is FNV-1a 64 followed by the splitmix64 finaliser:
// deterministic across processes, so every sidecar builds the same ring and
// table for the same endpoints.
func hashKey(s string, seed uint64) uint64 {
	h := uint64(14695981039346656037) ^ seed
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix(h)
}

// Ring-hash bounds, as Envoy's minimum_ring_size default and a smaller
// maximum than Envoy's 8M to bound memory (16 bytes per entry).
const (
	defaultRingSize = 1024
	maxRingSize     = 1 << 20
)

// ring is a ketama-style consistent-hash ring.
type ring struct {
	hashes []uint64 // sorted
	hosts  []*Host
}

// buildRing places each host on the ring in proportion to its weight with
// Envoy's sizing: scale = min(ceil(minW*size)/minW, maxRingSize) where minW
// is the smallest normalised weight, so the ring holds about size entries
// when weights are equal. Entry i of a host hashes "address_i".
func buildRing(hosts []*Host, size int) *ring {
	if len(hosts) == 0 {
		return nil
	}
	if size <= 0 {
		size = defaultRingSize
	}
	size = min(size, maxRingSize)
	sum := 0.0
	minW := math.MaxFloat64
	for _, h := range hosts {
		sum += float64(h.Weight)
	}
	for _, h := range hosts {
		minW = min(minW, float64(h.Weight)/sum)
	}
	scale := min(math.Ceil(minW*float64(size))/minW, maxRingSize)
	type entry struct {
		hash uint64
		host *Host
	}
	entries := make([]entry, 0, int(scale)+len(hosts))
	cur, target := 0.0, 0.0
	buf := make([]byte, 0, 64)
	for _, h := range hosts {
		target += scale * float64(h.Weight) / sum
		for i := 0; cur < target; i++ {
			buf = append(append(buf[:0], h.Address...), '_')
			buf = strconv.AppendInt(buf, int64(i), 10)
			entries = append(entries, entry{hashKey(string(buf), 0), h})
			cur++
		}
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(a.host.Address, b.host.Address)
	})
	r := &ring{hashes: make([]uint64, len(entries)), hosts: make([]*Host, len(entries))}
	for i, e := range entries {
		r.hashes[i], r.hosts[i] = e.hash, e.host
	}
	return r
}

func (r *ring) index(hash uint64) int {
	i, _ := slices.BinarySearch(r.hashes, hash)
	if i == len(r.hashes) {
		i = 0
	}
	return i
}

// lookup returns the first host clockwise from hash.
func (r *ring) lookup(hash uint64) *Host { return r.hosts[r.index(hash)] }

// walk returns the first host clockwise from hash that satisfies ok.
func (r *ring) walk(hash uint64, ok func(*Host) bool) *Host {
	i := r.index(hash)
	for k := range r.hosts {
		if h := r.hosts[(i+k)%len(r.hosts)]; ok(h) {
			return h
		}
	}
	return nil
}

// maglevSize is Envoy's default Maglev table size (a prime).
const maglevSize = 65537

// maglev is a Maglev lookup table (Eisenbud et al., NSDI '16) with Envoy's
// weighted population.
type maglev struct {
	table []uint32 // index into hosts
	hosts []*Host
}

func buildMaglev(in []*Host) *maglev {
	if len(in) == 0 {
		return nil
	}
	// Sort by address so the table does not depend on EDS order.
	hosts := slices.Clone(in)
	slices.SortFunc(hosts, func(a, b *Host) int { return cmp.Compare(a.Address, b.Address) })
	type build struct {
		offset, skip, next uint64
		weight, target     uint64
	}
	bs := make([]build, len(hosts))
	maxW := uint64(0)
	for i, h := range hosts {
		bs[i] = build{
			offset: hashKey(h.Address, 0) % maglevSize,
			skip:   hashKey(h.Address, 1)%(maglevSize-1) + 1,
			weight: uint64(h.Weight),
		}
		maxW = max(maxW, uint64(h.Weight))
	}
	const empty = math.MaxUint32
	table := make([]uint32, maglevSize)
	for i := range table {
		table[i] = empty
	}
	filled := 0
	for iter := uint64(0); filled < maglevSize; iter++ {
		for j := range bs {
			b := &bs[j]
			// A host of weight maxW takes a slot every iteration, one of
			// weight maxW/3 every third.
			if iter*b.weight < b.target {
				continue
			}
			b.target += maxW
			c := (b.offset + b.skip*b.next) % maglevSize
			for table[c] != empty {
				b.next++
				c = (b.offset + b.skip*b.next) % maglevSize
			}
			table[c] = uint32(j)
			b.next++
			filled++
			if filled == maglevSize {
				break
			}
		}
	}
	return &maglev{table: table, hosts: hosts}
}

func (m *maglev) lookup(hash uint64) *Host { return m.hosts[m.table[hash%maglevSize]] }

// walk probes the table forward from hash for a host satisfying ok.
func (m *maglev) walk(hash uint64, ok func(*Host) bool) *Host {
	i := hash % maglevSize
	for k := uint64(0); k < maglevSize; k++ {
		if h := m.hosts[m.table[(i+k)%maglevSize]]; ok(h) {
			return h
		}
	}
	return nil
}
