package hcloudsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// apiError is an error answered to the client as {"error":{"code","message","details"}}
// with the HTTP status the real API uses for that code.
type apiError struct {
	Status  int
	Code    string
	Message string
	Details any
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// statusForCode maps Hetzner error codes to the HTTP status documented in the
// "Errors" table of docs.hetzner.cloud.
var statusForCode = map[string]int{
	"json_error":                  http.StatusBadRequest,
	"unauthorized":                http.StatusUnauthorized,
	"forbidden":                   http.StatusForbidden,
	"maintenance":                 http.StatusForbidden,
	"resource_limit_exceeded":     http.StatusForbidden,
	"not_found":                   http.StatusNotFound,
	"method_not_allowed":          http.StatusMethodNotAllowed,
	"uniqueness_error":            http.StatusConflict,
	"conflict":                    http.StatusConflict,
	"resource_unavailable":        http.StatusPreconditionFailed,
	"invalid_input":               http.StatusUnprocessableEntity,
	"service_error":               http.StatusUnprocessableEntity,
	"unsupported_error":           http.StatusUnprocessableEntity,
	"volume_already_attached":     http.StatusUnprocessableEntity,
	"server_not_stopped":          http.StatusUnprocessableEntity,
	"firewall_already_applied":    http.StatusUnprocessableEntity,
	"firewall_resource_not_found": http.StatusUnprocessableEntity,
	"resource_in_use":             http.StatusUnprocessableEntity,
	"locked":                      http.StatusLocked,
	"protected":                   http.StatusLocked,
	"rate_limit_exceeded":         http.StatusTooManyRequests,
	"server_error":                http.StatusInternalServerError,
	"bad_gateway":                 http.StatusBadGateway,
	"unavailable":                 http.StatusServiceUnavailable,
	"timeout":                     http.StatusGatewayTimeout,
}

func newError(code, format string, args ...any) *apiError {
	st, ok := statusForCode[code]
	if !ok {
		st = http.StatusUnprocessableEntity
	}
	return &apiError{Status: st, Code: code, Message: fmt.Sprintf(format, args...)}
}

type fieldError struct {
	Name     string   `json:"name"`
	Messages []string `json:"messages"`
}

// invalidInput builds an invalid_input error with details.fields like the real API:
// message "invalid input in field 'size'".
func invalidInput(field string, messages ...string) *apiError {
	e := newError("invalid_input", "invalid input in field '%s': %s", field, strings.Join(messages, ", "))
	e.Details = map[string]any{"fields": []fieldError{{Name: field, Messages: messages}}}
	return e
}

func notFound(kind string, id any) *apiError {
	return newError("not_found", "%s with ID '%v' not found", kind, id)
}

func locked(kind string, id int64) *apiError {
	return newError("locked", "%s %d is locked: another action is running; wait for it to finish", kind, id)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	var details json.RawMessage
	if e.Details != nil {
		b, err := json.Marshal(e.Details)
		if err == nil {
			details = b
		}
	}
	if details == nil {
		details = json.RawMessage("{}")
	}
	writeJSON(w, e.Status, schema.ErrorResponse{Error: schema.Error{
		Code: e.Code, Message: e.Message, DetailsRaw: details,
	}})
}
