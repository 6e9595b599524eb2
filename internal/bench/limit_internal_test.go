package bench

import (
	"errors"
	"io"
	"slices"
	"testing"
)

// The broker limit's warm-up runs go on until two in a row agree within
// SettleWithin, up to the bound, and stop at an error.
func TestWarmUntilSettled(t *testing.T) {
	broken := errors.New("broker gone")
	for _, tc := range []struct {
		name    string
		rates   []float64 // what the runs measure, in order
		fail    int       // the run that fails, from 1 (0: none)
		max     int
		want    []float64
		wantErr error
	}{
		{name: "settles at the second run", rates: []float64{1_000_000, 1_050_000, 2_000_000}, max: 5, want: []float64{1_000_000, 1_050_000}},
		{name: "a cold broker speeds up, then settles", rates: []float64{400_000, 900_000, 1_500_000, 1_600_000, 1_600_000}, max: 5,
			want: []float64{400_000, 900_000, 1_500_000, 1_600_000}},
		{name: "a slowdown of more than the bound is no settling", rates: []float64{1_600_000, 1_400_000, 1_390_000}, max: 5,
			want: []float64{1_600_000, 1_400_000, 1_390_000}},
		{name: "never settles: the bound", rates: []float64{1, 2, 4, 8, 16, 32}, max: 5, want: []float64{1, 2, 4, 8, 16}},
		{name: "an error ends it", rates: []float64{1, 2, 4}, fail: 2, max: 5, want: []float64{1}, wantErr: broken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			got, err := warmUntilSettled(func() (float64, error) {
				n++
				if n == tc.fail {
					return 0, broken
				}
				return tc.rates[n-1], nil
			}, tc.max, io.Discard)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("warm-up rates %v, want %v", got, tc.want)
			}
		})
	}
}
