package imageset

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
)

// classIndex maps class names to labels.
type classIndex map[string]int

func indexClasses(classes []string) classIndex {
	m := make(classIndex, len(classes))
	for i, c := range classes {
		m[c] = i
	}
	return m
}

// label returns the label a label field names: a class name, or a label
// number in [0, n).
func (ci classIndex) label(field string) (int, bool) {
	if k, ok := ci[field]; ok {
		return k, true
	}
	k, err := strconv.Atoi(field)
	return k, err == nil && k >= 0 && k < len(ci)
}

// fileKey is how a label file names an image: its base name without
// extension ("ILSVRC2012_val_00000001"), so that lists with and without
// extensions both match.
func fileKey(name string) string {
	base := path.Base(strings.ReplaceAll(name, `\`, "/"))
	return strings.TrimSuffix(base, path.Ext(base))
}

// ParseCSVLabels reads a list of file,label records (file, a comma, the
// label, as in a CSV file) and returns each file's label, keyed by the
// file's base name without extension. A label is a class name or a label
// number; only its first space-separated word counts, so Kaggle's
// LOC_val_solution.csv ("ImageId,PredictionString", the class first in
// each prediction) is read too. A first record whose label is not a class
// is a header and skipped. name is the file's name in errors, which give
// the line and what is wrong.
func ParseCSVLabels(r io.Reader, name string, classes []string) (map[string]int, error) {
	ci := indexClasses(classes)
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	labels := make(map[string]int)
	for first := true; ; first = false {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("imageset: %s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) < 2 {
			return nil, fmt.Errorf("imageset: %s line %d: %d fields, want file,label", name, line, len(rec))
		}
		file := fileKey(strings.TrimSpace(rec[0]))
		word, _, _ := strings.Cut(strings.TrimSpace(rec[1]), " ")
		k, ok := ci.label(word)
		switch {
		case !ok && first:
			continue // a header
		case !ok:
			return nil, fmt.Errorf("imageset: %s line %d: label %q is neither one of the %d classes nor a number below %d", name, line, word, len(classes), len(classes))
		case file == "":
			return nil, fmt.Errorf("imageset: %s line %d: empty file name", name, line)
		}
		if _, dup := labels[file]; dup {
			return nil, fmt.Errorf("imageset: %s line %d: %s is labelled twice", name, line, file)
		}
		labels[file] = k
	}
	if len(labels) == 0 {
		return nil, fmt.Errorf("imageset: %s: no labels", name)
	}
	return labels, nil
}

// maxLine is the longest line the line-based label files may hold.
const maxLine = 4096

// lines calls f with each line of r (1-based number, text without
// surrounding space), skipping blank lines.
func lines(r io.Reader, name string, f func(n int, text string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLine)
	n := 0
	for sc.Scan() {
		n++
		if t := strings.TrimSpace(sc.Text()); t != "" {
			if err := f(n, t); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("imageset: %s line %d: longer than %d bytes", name, n+1, maxLine)
		}
		return fmt.Errorf("imageset: %s: %w", name, err)
	}
	return nil
}

// ParseSynsets reads a synset list: one class name (a WordNet ID) per
// line, first word of the line (a description may follow), in the order
// of the ILSVRC IDs 1, 2, … that the devkit's ground truth uses.
func ParseSynsets(r io.Reader, name string) ([]string, error) {
	var ids []string
	seen := make(map[string]bool)
	err := lines(r, name, func(n int, text string) error {
		word, _, _ := strings.Cut(text, " ")
		if seen[word] {
			return fmt.Errorf("imageset: %s line %d: %s listed twice", name, n, word)
		}
		seen[word] = true
		ids = append(ids, word)
		return nil
	})
	if err == nil && len(ids) == 0 {
		err = fmt.Errorf("imageset: %s: no synsets", name)
	}
	return ids, err
}

// ParseGroundTruth reads the ILSVRC devkit's validation ground truth:
// line k holds the ILSVRC ID (1-based, into synsets) of the k-th
// validation image in name order. It returns the labels, mapped through
// synsets to the index of each class in classes.
func ParseGroundTruth(r io.Reader, name string, synsets, classes []string) ([]int, error) {
	ci := indexClasses(classes)
	var labels []int
	err := lines(r, name, func(n int, text string) error {
		id, err := strconv.Atoi(text)
		if err != nil || id < 1 || id > len(synsets) {
			return fmt.Errorf("imageset: %s line %d: %q is not an ILSVRC ID in 1…%d", name, n, text, len(synsets))
		}
		k, ok := ci[synsets[id-1]]
		if !ok {
			return fmt.Errorf("imageset: %s line %d: ILSVRC ID %d is %s, which is not a class of the training split", name, n, id, synsets[id-1])
		}
		labels = append(labels, k)
		return nil
	})
	if err == nil && len(labels) == 0 {
		err = fmt.Errorf("imageset: %s: no labels", name)
	}
	return labels, err
}
