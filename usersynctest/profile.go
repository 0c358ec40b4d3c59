package usersynctest

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"reflect"
	"strings"
	"time"

	"github.com/usersync/usersync"
)

// fullProfile returns a profile with every field of usersync.Profile set
// to a value derived from seed, found by reflection: a field added to
// Profile is filled (and so checked by the suite) without a change here.
// Booleans take a bit of the seed's hash, so that both values occur.
func fullProfile(seed string) usersync.Profile {
	var p usersync.Profile
	v := reflect.ValueOf(&p).Elem()
	h := fnv.New32a()
	h.Write([]byte(seed))
	n := h.Sum32()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch f.Interface().(type) {
		case string:
			f.SetString(seed + " " + strings.ToLower(name))
		case bool:
			f.SetBool(n>>(i%32)&1 == 1)
		case time.Time:
			f.Set(reflect.ValueOf(epoch.Add(time.Duration(n%1_000_000) * time.Millisecond)))
		case json.RawMessage:
			f.Set(reflect.ValueOf(json.RawMessage(fmt.Sprintf(`{"seed":%q,"plan":"pro","n":%d}`, seed, n))))
		default:
			panic(fmt.Sprintf("usersynctest: Profile.%s has a type the kit cannot fill: %s", name, f.Type()))
		}
	}
	return p
}

// flipBools returns p with every boolean field negated.
func flipBools(p usersync.Profile) usersync.Profile {
	v := reflect.ValueOf(&p).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Bool {
			f.SetBool(!f.Bool())
		}
	}
	return p
}

// boolsOf returns p with the boolean fields of src.
func boolsOf(p, src usersync.Profile) usersync.Profile {
	v, sv := reflect.ValueOf(&p).Elem(), reflect.ValueOf(src)
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Bool {
			f.SetBool(sv.Field(i).Bool())
		}
	}
	return p
}

// profileDiff returns the names of the fields in which a and b differ, or
// "". Metadata compares as JSON values (nil and empty are equal), times
// at millisecond precision, every other field exactly.
func profileDiff(a, b usersync.Profile) string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var diff []string
	for i := range va.NumField() {
		fa, fb := va.Field(i).Interface(), vb.Field(i).Interface()
		var same bool
		switch x := fa.(type) {
		case json.RawMessage:
			same = jsonEqual(x, fb.(json.RawMessage))
		case time.Time:
			same = x.UnixMilli() == fb.(time.Time).UnixMilli() && x.IsZero() == fb.(time.Time).IsZero()
		default:
			same = reflect.DeepEqual(fa, fb)
		}
		if !same {
			diff = append(diff, va.Type().Field(i).Name)
		}
	}
	return strings.Join(diff, ", ")
}

// jsonEqual compares two JSON texts by value; nil and empty are equal.
func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}
