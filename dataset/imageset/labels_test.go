package imageset

import (
	"maps"
	"strings"
	"testing"
	"testing/iotest"
)

var testClasses = []string{"n01", "n02", "n03"}

func TestParseCSVLabels(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]int
		err      string
	}{
		{"plain", "a.JPEG,n02\nsub/b.png,2\n", map[string]int{"a": 1, "b": 2}, ""},
		{"header", "file,label\na,n01\n", map[string]int{"a": 0}, ""},
		{"quoted and spaced", "\"a,1.jpg\", n03 \n", map[string]int{"a,1": 2}, ""},
		{"kaggle", "ImageId,PredictionString\nx,n02 1 2 3 4 n02 5 6 7 8\n", map[string]int{"x": 1}, ""},
		{"unknown label", "a,n01\nb,n04\n", nil, `line 2: label "n04" is neither one of the 3 classes nor a number below 3`},
		{"number out of range", "a,3\n", nil, "no labels"},
		{"duplicate", "a.jpg,n01\na.png,n02\n", nil, "line 2: a is labelled twice"},
		{"one field", "a,n01\nb\n", nil, "line 2: 1 fields, want file,label"},
		{"empty name", "a,n01\n,n02\n", nil, "line 2: empty file name"},
		{"bad quote", "a,n01\n\"b,n02\n", nil, "labels.csv"},
		{"empty", "", nil, "labels.csv: no labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCSVLabels(strings.NewReader(tc.in), "labels.csv", testClasses)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	// A reader that returns one byte at a time and then an error.
	_, err := ParseCSVLabels(iotest.TimeoutReader(iotest.OneByteReader(strings.NewReader("a,n01\nb,n02\n"))), "labels.csv", testClasses)
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("reader error: %v", err)
	}
}

func TestParseSynsetsAndGroundTruth(t *testing.T) {
	syn, err := ParseSynsets(strings.NewReader("n03 tench, Tinca tinca\n\nn01 goldfish\n n02\n"), "synsets")
	if err != nil || strings.Join(syn, " ") != "n03 n01 n02" {
		t.Fatalf("synsets %v, %v", syn, err)
	}
	labels, err := ParseGroundTruth(strings.NewReader("1\n3\n2\n"), "gt", syn, testClasses)
	if err != nil || len(labels) != 3 || labels[0] != 2 || labels[1] != 1 || labels[2] != 0 {
		t.Fatalf("labels %v, %v; want [2 1 0]", labels, err)
	}
	for _, tc := range []struct{ syn, gt, want string }{
		{"n01\nn01\n", "1\n", "synsets line 2: n01 listed twice"},
		{"", "1\n", "synsets: no synsets"},
		{"n01\nn02\n", "1\n3\n", `gt line 2: "3" is not an ILSVRC ID in 1…2`},
		{"n01\nn02\n", "1\nx\n", `gt line 2: "x" is not an ILSVRC ID`},
		{"n01\nn09\n", "2\n", "gt line 1: ILSVRC ID 2 is n09, which is not a class"},
		{"n01\n", "\n\n", "gt: no labels"},
		{"n01\n", "1\n" + strings.Repeat("1", maxLine+1) + "\n", "gt line 2: longer than 4096 bytes"},
	} {
		syn, err := ParseSynsets(strings.NewReader(tc.syn), "synsets")
		if err == nil {
			_, err = ParseGroundTruth(strings.NewReader(tc.gt), "gt", syn, testClasses)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("synsets %q, ground truth %q: %v, want %q", tc.syn, tc.gt, err, tc.want)
		}
	}
}

// FuzzParseCSVLabels: any input gives labels within the classes or an
// error that names the file, never a panic.
func FuzzParseCSVLabels(f *testing.F) {
	f.Add([]byte("file,label\na.JPEG,n01\nb,2\n"))
	f.Add([]byte("ImageId,PredictionString\nx,n02 1 2 3 4\n"))
	f.Add([]byte("\"a\"\"b\",n03\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		labels, err := ParseCSVLabels(strings.NewReader(string(data)), "labels.csv", testClasses)
		if err != nil {
			if !strings.Contains(err.Error(), "labels.csv") {
				t.Fatalf("error without the file's name: %v", err)
			}
			return
		}
		for file, k := range labels {
			if k < 0 || k >= len(testClasses) || file == "" {
				t.Fatalf("label %d for %q", k, file)
			}
		}
	})
}

// FuzzParseGroundTruth: any synset list and ground truth give labels
// within the classes or an error naming the file, never a panic.
func FuzzParseGroundTruth(f *testing.F) {
	f.Add([]byte("n01 a\nn02 b\nn03\n"), []byte("1\n3\n2\n"))
	f.Add([]byte("n03\n"), []byte("0\n-1\n99999999999999999999\n"))
	f.Fuzz(func(t *testing.T, syn, gt []byte) {
		ids, err := ParseSynsets(strings.NewReader(string(syn)), "synsets.txt")
		if err != nil {
			if !strings.Contains(err.Error(), "synsets.txt") {
				t.Fatalf("error without the file's name: %v", err)
			}
			return
		}
		labels, err := ParseGroundTruth(strings.NewReader(string(gt)), "gt.txt", ids, testClasses)
		if err != nil {
			if !strings.Contains(err.Error(), "gt.txt") {
				t.Fatalf("error without the file's name: %v", err)
			}
			return
		}
		for _, k := range labels {
			if k < 0 || k >= len(testClasses) {
				t.Fatalf("label %d", k)
			}
		}
	})
}
