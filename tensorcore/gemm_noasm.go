//go:build !amd64 || noasm

package tensorcore

// gatherRows sets dst[i*width : (i+1)*width] = src[offs[i] : offs[i]+width]
// for every i < len(offs).
func gatherRows(dst, src []float32, offs []int, width int) { gatherRowsGo(dst, src, offs, width) }
