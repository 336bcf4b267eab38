package imageset

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The label files OpenFolder looks for beside a flat val/ folder, in this
// order.
const (
	ValLabelsCSV      = "val_labels.csv"                         // file,label
	KaggleValSolution = "LOC_val_solution.csv"                   // ImageId,PredictionString
	ILSVRCGroundTruth = "ILSVRC2012_validation_ground_truth.txt" // one ILSVRC ID per line
	ILSVRCSynsets     = "ILSVRC2012_synsets.txt"                 // the WordNet ID of each ILSVRC ID
	imageExtensions   = ".jpg .jpeg .png"                        // matched without regard to case
)

// isImage reports whether name has an image extension.
func isImage(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext != "" && strings.Contains(imageExtensions+" ", ext+" ")
}

// folder is a split of an image folder: files under root with labels.
type folder struct {
	root   string
	files  []string // relative to root, slash-separated
	labels []int32
}

func (f *folder) len() int           { return len(f.files) }
func (f *folder) where(i int) string { return filepath.Join(f.root, filepath.FromSlash(f.files[i])) }

func (f *folder) read(i int, buf []byte) ([]byte, int, error) {
	data, err := readFile(f.where(i), buf)
	if err != nil {
		return nil, 0, fmt.Errorf("imageset: %w", err)
	}
	return data, int(f.labels[i]), nil
}

// readFile reads the file into buf when it fits.
func readFile(name string, buf []byte) ([]byte, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxImageBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d an image may take", name, st.Size(), MaxImageBytes)
	}
	n := int(st.Size())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := fh.ReadAt(buf, 0); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return buf, nil
}

// FolderClasses returns the classes of the image folder dir: the names of
// the folders in dir/train, sorted (as torchvision's ImageFolder sorts
// them; names starting with a dot are left out).
func FolderClasses(dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "train"))
	if err != nil {
		return nil, fmt.Errorf("imageset: image folder %s: the class list comes from its train/ folder: %w", dir, err)
	}
	var classes []string
	for _, e := range ents {
		if isDir(filepath.Join(dir, "train"), e) && !strings.HasPrefix(e.Name(), ".") {
			classes = append(classes, e.Name())
		}
	}
	if len(classes) == 0 {
		return nil, fmt.Errorf("imageset: image folder %s: no class folders in train/", dir)
	}
	return classes, nil // ReadDir sorts by name
}

// isDir reports whether the entry is a folder, following a symbolic link.
func isDir(parent string, e fs.DirEntry) bool {
	if e.Type()&fs.ModeSymlink != 0 {
		st, err := os.Stat(filepath.Join(parent, e.Name()))
		return err == nil && st.IsDir()
	}
	return e.IsDir()
}

// OpenFolder returns split "train" or "val" ("test" is val) of the image
// folder dir, ImageNet's layout:
//
//	dir/train/<class>/…/<file>     the classes are train's folders, sorted
//	dir/val/<class>/…/<file>       val in class folders, or
//	dir/val/<file>                 val flat, with a label file in dir:
//	    val_labels.csv             file,label records (a class name or number)
//	    LOC_val_solution.csv       Kaggle's ImageId,PredictionString
//	    ILSVRC2012_validation_ground_truth.txt with ILSVRC2012_synsets.txt
//	                               the devkit's ILSVRC IDs of the files in name
//	                               order, and the WordNet ID of each ILSVRC ID
//
// Files are those named .jpg, .jpeg or .png (any case), in name order
// within each class, classes in label order; their formats are sniffed
// when read. Label k is the k-th class.
func OpenFolder(dir, split string) (*Set, error) {
	if split == "test" {
		split = "val"
	}
	if split != "train" && split != "val" {
		return nil, fmt.Errorf("imageset: image folder %s: unknown split %q (want train or val)", dir, split)
	}
	classes, err := FolderClasses(dir)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, split)
	f := &folder{root: root}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("imageset: image folder %s: %w", dir, err)
	}
	hasDirs := slices.ContainsFunc(ents, func(e fs.DirEntry) bool { return isDir(root, e) && !strings.HasPrefix(e.Name(), ".") })
	if split == "train" || hasDirs {
		err = f.scanClasses(classes)
	} else {
		err = f.scanFlat(dir, classes)
	}
	if err != nil {
		return nil, err
	}
	if len(f.files) == 0 {
		return nil, fmt.Errorf("imageset: image folder %s: no images (.jpg, .jpeg, .png) in %s/", dir, split)
	}
	return newSet(f, classes), nil
}

// scanClasses lists the images of the class folders under f.root; every
// folder must be one of classes.
func (f *folder) scanClasses(classes []string) error {
	ci := indexClasses(classes)
	ents, err := os.ReadDir(f.root)
	if err != nil {
		return fmt.Errorf("imageset: %w", err)
	}
	for _, e := range ents {
		if !isDir(f.root, e) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		k, ok := ci[e.Name()]
		if !ok {
			return fmt.Errorf("imageset: %s: folder %s is not one of the %d classes of train/", f.root, e.Name(), len(classes))
		}
		files, err := imagesUnder(f.root, e.Name())
		if err != nil {
			return err
		}
		for _, name := range files {
			f.files = append(f.files, name)
			f.labels = append(f.labels, int32(k))
		}
	}
	return nil
}

// imagesUnder lists the images under root/sub, recursively, following
// symbolic links, as sorted slash-separated paths relative to root.
func imagesUnder(root, sub string) ([]string, error) {
	var files []string
	var walk func(rel string, depth int) error
	walk = func(rel string, depth int) error {
		if depth > 16 {
			return fmt.Errorf("imageset: %s: folders nested more than 16 deep", filepath.Join(root, rel))
		}
		ents, err := os.ReadDir(filepath.Join(root, rel))
		if err != nil {
			return fmt.Errorf("imageset: %w", err)
		}
		for _, e := range ents {
			name := rel + "/" + e.Name()
			switch {
			case strings.HasPrefix(e.Name(), "."):
			case isDir(filepath.Join(root, rel), e):
				if err := walk(name, depth+1); err != nil {
					return err
				}
			case isImage(e.Name()):
				files = append(files, name)
			}
		}
		return nil
	}
	if err := walk(sub, 0); err != nil {
		return nil, err
	}
	slices.Sort(files)
	return files, nil
}

// scanFlat lists the images directly in f.root and labels them from the
// first label file found in dir.
func (f *folder) scanFlat(dir string, classes []string) error {
	ents, err := os.ReadDir(f.root)
	if err != nil {
		return fmt.Errorf("imageset: %w", err)
	}
	var files []string
	for _, e := range ents {
		if !e.IsDir() && isImage(e.Name()) && !strings.HasPrefix(e.Name(), ".") {
			files = append(files, e.Name())
		}
	}
	for _, name := range []string{ValLabelsCSV, KaggleValSolution} {
		fh, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("imageset: %w", err)
		}
		labels, err := ParseCSVLabels(fh, filepath.Join(dir, name), classes)
		fh.Close()
		if err != nil {
			return err
		}
		for _, file := range files {
			k, ok := labels[fileKey(file)]
			if !ok {
				return fmt.Errorf("imageset: %s has no label for %s", filepath.Join(dir, name), filepath.Join(f.root, file))
			}
			f.files = append(f.files, file)
			f.labels = append(f.labels, int32(k))
		}
		return nil
	}
	gt, err := os.Open(filepath.Join(dir, ILSVRCGroundTruth))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("imageset: %s has images but no class folders, and %s holds no label file (%s, %s, or %s with %s)",
			f.root, dir, ValLabelsCSV, KaggleValSolution, ILSVRCGroundTruth, ILSVRCSynsets)
	}
	if err != nil {
		return fmt.Errorf("imageset: %w", err)
	}
	defer gt.Close()
	sf, err := os.Open(filepath.Join(dir, ILSVRCSynsets))
	if err != nil {
		return fmt.Errorf("imageset: %s needs %s, the WordNet ID of each ILSVRC ID, one per line: %w", ILSVRCGroundTruth, ILSVRCSynsets, err)
	}
	defer sf.Close()
	synsets, err := ParseSynsets(sf, filepath.Join(dir, ILSVRCSynsets))
	if err != nil {
		return err
	}
	labels, err := ParseGroundTruth(gt, filepath.Join(dir, ILSVRCGroundTruth), synsets, classes)
	if err != nil {
		return err
	}
	if len(labels) != len(files) {
		return fmt.Errorf("imageset: %s has %d labels for the %d images of %s", filepath.Join(dir, ILSVRCGroundTruth), len(labels), len(files), f.root)
	}
	f.files = files
	for _, k := range labels {
		f.labels = append(f.labels, int32(k))
	}
	return nil
}
