package models

import "math"

// A Schedule gives the learning rate of each optimizer step as a pure
// function of the 0-based step number, so a job resumed at step k uses
// exactly the rates it would have used without stopping.
type Schedule interface {
	LR(step int) float32
}

// ConstantLR is Base at every step.
type ConstantLR struct{ Base float64 }

// LR returns Base.
func (s ConstantLR) LR(int) float32 { return float32(s.Base) }

// StepDecay is Base·Gamma^⌊step/Every⌋ (PyTorch StepLR). Every ≤ 0 means
// no decay.
type StepDecay struct {
	Base  float64
	Every int
	Gamma float64
}

// LR returns the decayed rate at step.
func (s StepDecay) LR(step int) float32 {
	if s.Every <= 0 || step < 0 {
		return float32(s.Base)
	}
	return float32(s.Base * math.Pow(s.Gamma, float64(step/s.Every)))
}

// Cosine anneals from Base at step 0 to Min at step Steps along half a
// cosine, Min + (Base-Min)·(1+cos(π·step/Steps))/2 (PyTorch
// CosineAnnealingLR without restarts), and stays at Min afterwards.
// Steps ≤ 0 means Base throughout.
type Cosine struct {
	Base, Min float64
	Steps     int
}

// LR returns the annealed rate at step.
func (s Cosine) LR(step int) float32 {
	switch {
	case s.Steps <= 0 || step <= 0:
		return float32(s.Base)
	case step >= s.Steps:
		return float32(s.Min)
	}
	c := (1 + math.Cos(math.Pi*float64(step)/float64(s.Steps))) / 2
	return float32(s.Min + (s.Base-s.Min)*c)
}

// Warmup ramps linearly for Steps steps, then hands over to Then (PyTorch
// LinearLR followed by SequentialLR): for step < Steps the rate is
// Then.LR(0)·(Start + (1-Start)·step/Steps); from step Steps on it is
// Then.LR(step-Steps), so Then's own step count starts when the warm-up
// ends (a Cosine after a Warmup spans the remaining steps). Start is the
// factor at step 0 (e.g. 1/k for Goyal et al.'s gradual warm-up from lr/k;
// the zero value makes the first step's rate 0). Then must not be nil.
type Warmup struct {
	Steps int
	Start float64
	Then  Schedule
}

// LR returns the warm-up or the following schedule's rate at step.
func (s Warmup) LR(step int) float32 {
	if step >= s.Steps {
		return s.Then.LR(step - s.Steps)
	}
	if step < 0 {
		step = 0
	}
	f := s.Start + (1-s.Start)*float64(step)/float64(s.Steps)
	return float32(float64(s.Then.LR(0)) * f)
}
