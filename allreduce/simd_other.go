//go:build !amd64 || purego

package allreduce

func encodeBF16(dst []uint16, src []float32)    { encodeBF16Go(dst, src) }
func decodeBF16(dst []float32, src []uint16)    { decodeBF16Go(dst, src) }
func decodeAddBF16(dst []float32, src []uint16) { decodeAddBF16Go(dst, src) }
func addTo(dst, src []float32)                  { addToGo(dst, src) }

func decodeAddEncodeBF16(dst []float32, src, out []uint16, round bool) {
	decodeAddEncodeBF16Go(dst, src, out, round)
}
func decodeCopyBF16(dst []float32, src, out []uint16) { decodeCopyBF16Go(dst, src, out) }

func encodeF16(dst []uint16, src []float32) { encodeF16Go(dst, src) }
func decodeF16(dst []float32, src []uint16, table *[1 << 16]float32, add bool) {
	decodeF16Go(dst, src, table, add)
}

func quantizeBF16(x []float32)                         { quantizeBF16Go(x) }
func quantizeF16(x []float32, table *[1 << 16]float32) { quantizeF16Go(x, table) }
