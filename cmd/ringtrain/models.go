package main

import (
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/safetensors"
	"github.com/ringtrain/ringtrain/tensorcore"
	"github.com/ringtrain/ringtrain/worker"
)

func newModelsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "models",
		Short: "List the model zoo; export a model's weights, or run one on a batch",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tPARAMETERS\tINPUT\tDESCRIPTION")
			for _, name := range models.Names() {
				n, in, err := models.Describe(name, models.Config{})
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "%s\t%d\t%v\t%s\n", name, n, in, models.About(name))
			}
			return w.Flush()
		},
	}
	cmd.AddCommand(newModelsExportCmd(), newModelsRunCmd())
	return cmd
}

// modelFlags are the flags that choose and size a zoo model.
type modelFlags struct {
	name              string
	seed              uint64
	classes, size, ch int
}

func (m *modelFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&m.name, "model", "", "model zoo name (see 'ringtrain models')")
	f.Uint64Var(&m.seed, "seed", 1, "seed of the initialization")
	f.IntVar(&m.classes, "classes", 0, "classes of an ImageNet or CIFAR net (0: its default)")
	f.IntVar(&m.size, "image-size", 0, "image side of an ImageNet or CIFAR net (0: its default)")
	f.IntVar(&m.ch, "channels", 0, "input channels of an ImageNet or CIFAR net (0: its default, 3)")
	_ = cmd.MarkFlagRequired("model")
}

func (m *modelFlags) build() (*models.Model, error) {
	return models.BuildFor(m.name, m.seed, models.Config{Classes: m.classes, Input: []int{m.ch, m.size, m.size}})
}

func newModelsExportCmd() *cobra.Command {
	var (
		mf  modelFlags
		out string
	)
	cmd := &cobra.Command{
		Use:   "export --model NAME --out FILE.safetensors",
		Short: "Write a freshly initialized model's weights as a PyTorch state_dict in safetensors",
		Long: `Writes the state_dict of a zoo model as the seed initializes it, under
PyTorch's names: the ImageNet nets at their defaults load into the
torchvision model of the same name with load_state_dict(strict=True).
A trained model's weights are in its checkpoints' model.safetensors.`,
		Example: `  ringtrain models export --model resnet50 --out resnet50.safetensors
  ringtrain models export --model resnet20 --classes 100 --out r20.safetensors`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := mf.build()
			if err != nil {
				return err
			}
			if err := worker.WriteModel(m, 0, out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d parameters, input %v, %d classes → %s\n", m.Name, m.Arena.NumParams(), m.InputShape, m.NumClasses, out)
			return nil
		},
	}
	mf.add(cmd)
	cmd.Flags().StringVar(&out, "out", "", "the safetensors file to write")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func newModelsRunCmd() *cobra.Command {
	var (
		mf               modelFlags
		weights, in, out string
		inName, outName  string
		threads          int
	)
	cmd := &cobra.Command{
		Use:   "run --model NAME --weights FILE --input FILE --out FILE",
		Short: "Compute a model's logits for a batch (evaluation mode) from safetensors files",
		Long: `Loads the weights (a PyTorch state_dict in safetensors, a checkpoint's
model.safetensors or an export) into a zoo model, runs it in evaluation mode
on the batch held by the input file (tensor "input", N×C×H×W, F32 or F64)
and writes the logits (tensor "logits", N×classes, F32) to the out file.
The model takes the input's channels and size; --classes must match the
weights' head where it is not the model's default.`,
		Example: `  ringtrain models run --model resnet18 --weights resnet18.safetensors --input batch.safetensors --out logits.safetensors`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := safetensors.ReadFile(in)
			if err != nil {
				return err
			}
			t, ok := f.Tensor(inName)
			if !ok || len(t.Shape) != 4 {
				return fmt.Errorf("%s: no 4-dimensional tensor %q (N×C×H×W)", in, inName)
			}
			x, err := t.Float32s()
			if err != nil {
				return fmt.Errorf("%s: %q: %w", in, inName, err)
			}
			if mf.ch == 0 {
				mf.ch = t.Shape[1]
			}
			if mf.size == 0 && t.Shape[2] == t.Shape[3] {
				mf.size = t.Shape[2]
			}
			m, err := mf.build()
			if err != nil {
				return err
			}
			rep, err := worker.LoadWeights(m, weights)
			if err != nil {
				return err
			}
			if len(rep.NewHead) > 0 {
				return fmt.Errorf("%s: the head (%v) is not for %d classes: give --classes", weights, rep.NewHead, m.NumClasses)
			}
			if !slices.Equal(t.Shape[1:], m.InputShape) {
				return fmt.Errorf("%s: input %v; model %s takes %v", in, t.Shape, m.Name, m.InputShape)
			}
			pool := tensorcore.NewPool(threads)
			defer pool.Close()
			tp := tensorcore.NewTape(pool)
			logits := m.Forward(tp, tp.Const(tensorcore.FromSlice(x, t.Shape...)), false)
			lt := safetensors.F32(logits.Value.Shape, logits.Value.Data)
			return safetensors.WriteFile(out, map[string]safetensors.Tensor{outName: lt}, map[string]string{"model": m.Name})
		},
	}
	mf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&weights, "weights", "", "safetensors file of the model's weights")
	f.StringVar(&in, "input", "", "safetensors file holding the batch")
	f.StringVar(&out, "out", "", "safetensors file to write the logits to")
	f.StringVar(&inName, "input-name", "input", "the batch's tensor name in the input file")
	f.StringVar(&outName, "output-name", "logits", "the logits' tensor name in the out file")
	f.IntVar(&threads, "threads", 0, "compute threads (0: all cores)")
	for _, name := range []string{"weights", "input", "out"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}
