package sim

import (
	"strings"
	"testing"
	"time"
)

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Options)
		wantErr string
	}{
		{"defaults are valid", func(*Options) {}, ""},
		{"model required", func(o *Options) { o.Model = "" }, "model is required"},
		{"bad listen", func(o *Options) { o.Listen = "nowhere" }, "listen"},
		{"adapter named like the model", func(o *Options) { o.LoRAs = []string{"m"} }, "duplicate"},
		{"negative seqs", func(o *Options) { o.MaxNumSeqs = -1 }, "max-num-seqs must be at least 1"},
		{"negative itl", func(o *Options) { o.ITL = -time.Millisecond }, "itl must not be negative"},
		{"load factor below 1", func(o *Options) { o.LoadFactor = 0.5 }, "load-factor"},
		{"fail rate above 1", func(o *Options) { o.FailRate = 1.5 }, "fail-rate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Model: "m"}
			tc.mod(&o)
			err := o.withDefaults().validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
	if _, err := Start(t.Context(), Options{}); err == nil {
		t.Error("Start accepted options without a model")
	}
}
