package request

// RewriteModel returns a copy of body whose "model" value (the one Parse
// found, i.e. the last) is replaced by quotedModel, a JSON string token.
// Splicing at the parsed span keeps duplicate keys right: a path-based
// setter such as sjson edits the first "model" while model servers read
// the last one.
func RewriteModel(body []byte, r *Request, quotedModel []byte) []byte {
	out := make([]byte, 0, len(body)-(r.ModelSpan.End-r.ModelSpan.Start)+len(quotedModel))
	out = append(out, body[:r.ModelSpan.Start]...)
	out = append(out, quotedModel...)
	return append(out, body[r.ModelSpan.End:]...)
}
