package main

import (
	"math"
	"math/bits"
	"time"
)

// Histogram buckets non-negative durations log-linearly, in the manner of
// HdrHistogram: values below 128 ns get a bucket each, and every power of two
// above that is split into 64 equal buckets, so a reported value is within
// 1/128 (0.8 %) of the true one. It has a fixed size whatever is recorded,
// which bounds the load generator's memory however long it runs.
//
// A Histogram is not safe for concurrent use: each worker owns one, and they
// are merged when the workers are done.
type Histogram struct {
	counts [histBuckets]uint64
	total  uint64
	min    uint64
	max    uint64
	sum    float64
}

const (
	histLinear  = 128 // values [0,128) are exact
	histSub     = 64  // buckets per power of two above that
	histBuckets = histLinear + (64-7)*histSub
)

func bucketOf(v uint64) int {
	if v < histLinear {
		return int(v)
	}
	shift := bits.Len64(v) - 7 // >= 1; v>>shift is in [64,128)
	return histLinear + (shift-1)*histSub + int(v>>uint(shift)) - histSub
}

// bucketRange returns the smallest value in bucket i and the bucket's width.
func bucketRange(i int) (lo, width uint64) {
	if i < histLinear {
		return uint64(i), 1
	}
	shift := (i-histLinear)/histSub + 1
	top := uint64((i-histLinear)%histSub + histSub)
	return top << uint(shift), 1 << uint(shift)
}

// Record adds one observation; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[bucketOf(v)]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total++
	h.sum += float64(v)
}

// Merge adds every observation of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.total += o.total
	h.sum += o.sum
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 { return h.total }

// Max is the largest observation, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the arithmetic mean of the observations.
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}

// Quantile returns the q-quantile (0 < q <= 1) by the nearest-rank method:
// the value of the ceil(q*n)-th smallest observation, reported as the middle
// of its bucket and clamped to the observed min and max.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	if rank > h.total {
		rank = h.total
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen < rank {
			continue
		}
		lo, w := bucketRange(i)
		v := lo + (w-1)/2
		if v < h.min {
			v = h.min
		}
		if v > h.max {
			v = h.max
		}
		return time.Duration(v)
	}
	return time.Duration(h.max)
}
