package usersync

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// Every field of Profile is copied by exactly one row of profileFields,
// and AllFields is every row: a field added to Profile without its row
// fails here.
func TestProfileFieldsCoverProfile(t *testing.T) {
	var src Profile
	v := reflect.ValueOf(&src).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Interface().(type) {
		case string:
			f.SetString("x")
		case bool:
			f.SetBool(true)
		case time.Time:
			f.Set(reflect.ValueOf(time.Unix(1, 0)))
		case json.RawMessage:
			f.Set(reflect.ValueOf(json.RawMessage(`{}`)))
		default:
			t.Fatalf("Profile.%s has a type this test does not know", v.Type().Field(i).Name)
		}
	}
	copiedBy := make([]Fields, v.NumField())
	var all Fields
	for _, pf := range profileFields {
		if all&pf.field != 0 {
			t.Fatalf("field %#x has two rows", pf.field)
		}
		all |= pf.field
		var dst Profile
		pf.copy(&dst, &src)
		dv := reflect.ValueOf(dst)
		for i := range dv.NumField() {
			if !dv.Field(i).IsZero() {
				if copiedBy[i] != 0 {
					t.Fatalf("Profile.%s is copied by fields %#x and %#x", v.Type().Field(i).Name, copiedBy[i], pf.field)
				}
				copiedBy[i] = pf.field
			}
		}
	}
	for i, f := range copiedBy {
		if f == 0 {
			t.Errorf("Profile.%s has no row in profileFields", v.Type().Field(i).Name)
		}
	}
	if all != AllFields {
		t.Errorf("rows cover %#x, AllFields is %#x", all, AllFields)
	}
}
