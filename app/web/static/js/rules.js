// The rules the API judges with now (GET /api/rules): the verticals and the kinds of issue
// the rules file declares, which the page offers as filters. Read once per page load (main.js
// starts the read with the session's); a failed read is asked again by the next page that
// needs it. The answer's ETag is the rules' version, so a reload revalidates it cheaply.
import { get, prefetched } from "./api.js";
import { useEffect, useState } from "./html.js";

let asked = null;

export function loadRules() {
  if (asked) return asked;
  const pending = (prefetched("/api/rules") ?? get("/api/rules")).then((answer) => answer.data);
  asked = pending;
  pending.catch(() => {
    if (asked === pending) asked = null;
  });
  return pending;
}

// {rules, problem}: rules is null until read (or when it could not be).
export function useRules() {
  const [state, setState] = useState({ rules: null, problem: null });
  useEffect(() => {
    let live = true;
    loadRules()
      .then((rules) => live && setState({ rules, problem: null }))
      .catch((failure) => live && setState({ rules: null, problem: failure.message }));
    return () => {
      live = false;
    };
  }, []);
  return state;
}
