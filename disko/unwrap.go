package disko

import "encoding/json"

// UnwrapDevices accepts a file holding { disko.devices = …; } (as
// disko's example files are written) as well as the bare value of
// disko.devices, and returns the bare value for Parse.
func UnwrapDevices(data []byte) []byte {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil || len(top) != 1 {
		return data
	}
	raw, ok := top["disko"]
	if !ok {
		return data
	}
	var d map[string]json.RawMessage
	if json.Unmarshal(raw, &d) != nil || len(d) != 1 || d["devices"] == nil {
		return data
	}
	return d["devices"]
}
