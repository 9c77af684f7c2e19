package router

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/inflow-gateway/inflow/filter/config"
)

// defaultOwner is the owned_by of a model whose config names none.
const defaultOwner = "inflow"

// modelObject is OpenAI's model object: an entry of GET /v1/models and the
// answer to GET /v1/models/{id}.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

// renderModels renders, once per config, the list and each model's object
// (by name), so serving them costs no encoding.
func renderModels(models []config.Model, created int64) (list []byte, objects map[string][]byte, err error) {
	l := modelList{Object: "list", Data: make([]modelObject, 0, len(models))}
	objects = make(map[string][]byte, len(models))
	for _, m := range models {
		owner := m.OwnedBy
		if owner == "" {
			owner = defaultOwner
		}
		o := modelObject{ID: m.Name, Object: "model", Created: created, OwnedBy: owner}
		if objects[m.Name], err = json.Marshal(o); err != nil {
			return nil, nil, err
		}
		l.Data = append(l.Data, o)
	}
	slices.SortFunc(l.Data, func(a, b modelObject) int { return strings.Compare(a.ID, b.ID) })
	list, err = json.Marshal(l)
	return list, objects, err
}
