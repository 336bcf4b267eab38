package allreduce

import "fmt"

// Bucket is a contiguous range of a flat gradient arena that is
// all-reduced as one operation.
type Bucket struct {
	// Span is the bucket's range of the arena, in elements.
	Span Span
	// Params are the indices of the parameters in the bucket, in the order
	// they were added (descending: backward produces the last ones first).
	Params []int
}

// BucketLimits bounds bucket sizes in bytes of float32 data.
type BucketLimits struct {
	// First caps the first bucket (the last layers' gradients, ready
	// earliest), so communication starts early. 0: 1 MiB.
	First int
	// Cap caps every later bucket. 0: 25 MiB.
	Cap int
}

// PlanBuckets assigns parameters, whose element counts are sizes (in
// arena order: parameter i occupies the elements after parameter i-1), to
// buckets. Parameters are taken in reverse order, since backward produces
// the gradients of the last parameters first; a bucket is closed as soon as
// it holds at least its limit (First for the first bucket, Cap after), so a
// parameter larger than the limit gets a bucket of its own. Buckets are
// returned in the order they become ready, and each is a contiguous Span of
// the arena. Zero-sized parameters join the current bucket.
func PlanBuckets(sizes []int, lim BucketLimits) ([]Bucket, error) {
	if lim.First == 0 {
		lim.First = 1 << 20
	}
	if lim.Cap == 0 {
		lim.Cap = 25 << 20
	}
	if lim.First < 0 || lim.Cap < 0 {
		return nil, fmt.Errorf("allreduce: bucket limits %+v", lim)
	}
	offs := make([]int, len(sizes)+1)
	for i, s := range sizes {
		if s < 0 {
			return nil, fmt.Errorf("allreduce: parameter %d has %d elements", i, s)
		}
		offs[i+1] = offs[i] + s
	}
	var out []Bucket
	var cur Bucket
	open := false
	bytes := 0
	limit := lim.First
	for i := len(sizes) - 1; i >= 0; i-- {
		if !open {
			cur = Bucket{Span: Span{Off: offs[i+1]}}
			open = true
			bytes = 0
		}
		cur.Params = append(cur.Params, i)
		cur.Span.Len += sizes[i]
		cur.Span.Off = offs[i]
		bytes += 4 * sizes[i]
		if bytes >= limit {
			out = append(out, cur)
			open = false
			limit = lim.Cap
		}
	}
	if open {
		out = append(out, cur)
	}
	return out, nil
}
