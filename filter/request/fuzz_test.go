package request

import "testing"

// FuzzParse checks Parse against encoding/json on arbitrary bodies, for
// every kind of request.
func FuzzParse(f *testing.F) {
	for _, body := range corpus(f) {
		f.Add(uint8(ChatCompletions), body)
	}
	f.Add(uint8(Messages), []byte(`{"model":"m","system":"s","messages":[]}`))
	f.Add(uint8(Completions), []byte(`{"model":"m","prompt":[1,2]}`))
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		k := Kind(kind%uint8(Messages)) + 1
		checkAgainstOracle(t, k, body)
	})
}
