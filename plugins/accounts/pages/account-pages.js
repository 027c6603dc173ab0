// The pages the links in Turnstile's mails open when no front end of a deployment's own takes
// them (PUBLIC_URL pointing at the service itself, as in development). The token travels in the
// URL's fragment, which no request carries: the page reads it, drops it from the address bar and
// history, and sends it to the API in a POST body.
"use strict";

const API = {
  "verify-email": "/api/v1/auth/verify",
  "reset-password": "/api/v1/auth/reset-password",
};

function takeToken() {
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  history.replaceState(null, "", window.location.pathname);
  return token;
}

function say(text) {
  document.getElementById("status").textContent = text;
}

async function problemText(response) {
  try {
    const problem = await response.json();
    const fields = (problem.errors || []).map((error) => `${error.loc.slice(1).join(".")}: ${error.msg}`);
    return [problem.detail || problem.title, ...fields].join(" ");
  } catch {
    return `The service answered ${response.status}.`;
  }
}

async function post(page, body) {
  return fetch(API[page], {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "omit",
  });
}

// A click, not the page's opening, verifies: mail scanners and link previews open links (and run
// their scripts) too, and an address must not be proven by a machine that merely looked at it.
function offerVerify(token) {
  const button = document.getElementById("verify");
  button.hidden = false;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const response = await post("verify-email", { token });
      if (response.ok) {
        button.hidden = true;
        say("Your email address is verified. You can close this page.");
      } else {
        button.disabled = false;
        say(await problemText(response));
      }
    } catch {
      button.disabled = false;
      say("The service could not be reached; try again.");
    }
  });
}

function offerReset(token) {
  const form = document.getElementById("reset");
  form.hidden = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = document.getElementById("password").value;
    if (password !== document.getElementById("again").value) {
      say("The two passwords differ.");
      return;
    }
    const response = await post("reset-password", { token, password });
    if (response.ok) {
      form.hidden = true;
      say("Your password is changed, and every session of the account has ended: sign in again.");
    } else {
      say(await problemText(response));
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  const token = takeToken();
  if (!token) {
    say("This link has no token: open the link from the mail as it is.");
  } else if (page === "verify-email") {
    offerVerify(token);
  } else {
    offerReset(token);
  }
});
