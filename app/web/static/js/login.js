// The login form: a token (from `inbox token` or the company's identity provider) becomes
// the session cookie through POST /api/session; the token never goes into a URL.
import { ApiError, startSession } from "./api.js";
import { html, useState } from "./html.js";

export function Login({ problem, onLogin }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState(problem);
  const [busy, setBusy] = useState(false);

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onLogin(await startSession({ token: token.trim() }));
    } catch (failure) {
      setError(
        failure instanceof ApiError && failure.status === 401
          ? "That token is not valid (expired, or not signed by a key this inbox trusts)."
          : `Could not log in: ${failure.message}`,
      );
    } finally {
      setBusy(false);
    }
  }

  return html`
    <main id="main" class="login">
      <h1>Support Inbox</h1>
      <form onSubmit=${submit} aria-describedby="login-help">
        <label for="token">Access token</label>
        <textarea id="token" name="token" rows="4" required autocomplete="off" spellcheck="false"
          value=${token} onInput=${(e) => setToken(e.currentTarget.value)}></textarea>
        <p id="login-help" class="help">
          Paste the token your identity provider issued. For a development inbox:
          <code>inbox token --role agent --name "Your Name"</code>.
        </p>
        ${error && html`<p class="error" role="alert">${error}</p>`}
        <button type="submit" disabled=${busy || !token.trim()}>${busy ? "Logging in…" : "Log in"}</button>
      </form>
    </main>`;
}
