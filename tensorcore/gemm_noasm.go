//go:build !amd64 || noasm

package tensorcore

// gatherRows sets dst[i*width : (i+1)*width] = src[offs[i] : offs[i]+width]
// for every i < len(offs).
func gatherRows(dst, src []float32, offs []int, width int) { gatherRowsGo(dst, src, offs, width) }

func packARowsFast(panel, d []float32, off, ld, mr, kc int) int { return 0 }

func packColsFast(panel, d []float32, off, ld, n, kc int) int { return 0 }

func packBFast(dst, d []float32, off, ld, kc, panels, nr int) bool { return false }
