// Runs a list of steps with the official client (cumulonimbus-wrapper), unchanged, and
// prints what each step returned or threw as JSON, so that a test in another language can
// judge it. The plan comes as JSON on stdin:
//
//   {
//     "baseURL": "http://127.0.0.1:8000/api",
//     "control": "http://127.0.0.1:8000/_mock",   // optional: the mock's control API
//     "pace": 1,                                   // optional: seconds the mock's clock moves before each call
//     "steps": [
//       {"id": "a", "login": ["alice", "password"]},          // static login; names a client "a"
//       {"client": "a", "call": "getSelfSessions", "args": [{"limit": 1}]},
//       {"client": "s", "token": {"$": "0.result.token"}},    // a client from a token
//       {"control": ["PUT", "/killswitches/1", {"state": true}]}
//     ]
//   }
//
// Any value {"$": "path"} in a step is replaced by what an earlier outcome holds at that
// path, where the path starts with the step's index or its "id" ("chal.error.token").
// Output: one JSON array, one outcome per step:
//   {"ok": true, "status": 200, "result": {...}, "ratelimit": {...} | null}
//   {"ok": true, "token": "..."}                       (login, and clients made from a token)
//   {"ok": false, "error": {"class": "ResponseError", "responseError": true, "code": ..., ...}}
import Cumulonimbus from 'cumulonimbus-wrapper';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function resolve(value, outcomes, named) {
  if (Array.isArray(value)) return value.map((v) => resolve(v, outcomes, named));
  if (value && typeof value === 'object') {
    if (typeof value.$ === 'string') {
      const [head, ...rest] = value.$.split('.');
      let current = /^\d+$/.test(head) ? outcomes[Number(head)] : named[head];
      for (const key of rest) {
        if (current === undefined || current === null) break;
        current = current[key];
      }
      if (current === undefined) throw new Error(`reference ${value.$} is undefined`);
      return current;
    }
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, resolve(v, outcomes, named)]),
    );
  }
  return value;
}

function describeError(error) {
  const described = {
    class: error && error.constructor ? error.constructor.name : typeof error,
    responseError: error instanceof Cumulonimbus.ResponseError,
    missingFieldsError: error instanceof Cumulonimbus.MissingFieldsError,
    secondFactorChallengeRequiredError:
      error instanceof Cumulonimbus.SecondFactorChallengeRequiredError,
    message: error && error.message,
  };
  if (described.responseError) {
    // The client copies the whole error body onto the error (code, fields, token, ...).
    for (const [key, value] of Object.entries(error)) described[key] = value;
  } else {
    described.stack = error && error.stack;
  }
  return described;
}

async function control(plan, method, path, body) {
  const res = await fetch(plan.control + path, {
    method,
    headers: { 'Content-Type': 'application/json', ...(plan.controlHeaders || {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { ok: res.ok, status: res.status, result: await res.json() };
}

async function main() {
  const plan = await readStdin();
  const options = { baseURL: plan.baseURL };
  const clients = {};
  const outcomes = [];
  const named = {};
  for (const raw of plan.steps) {
    let outcome;
    try {
      const step = resolve(raw, outcomes, named);
      if (step.control) {
        outcome = await control(plan, ...step.control);
      } else {
        if (plan.pace && plan.control) {
          await control(plan, 'POST', '/clock', { advance: plan.pace });
        }
        if (step.login) {
          const [username, passwordOrSFR, rememberMe = false] = step.login;
          const client = await Cumulonimbus.login(username, passwordOrSFR, rememberMe, options);
          if (step.id) clients[step.id] = client;
          outcome = { ok: true, token: client.token };
        } else if (step.token !== undefined) {
          clients[step.id] = new Cumulonimbus(step.token, options);
          outcome = { ok: true, token: step.token };
        } else {
          const client = clients[step.client];
          if (!client) throw new Error(`no client named ${step.client}`);
          const res = await client[step.call](...(step.args || []));
          outcome = {
            ok: true,
            status: res.response.status,
            result: res.result,
            ratelimit: res.ratelimit,
          };
        }
      }
    } catch (error) {
      outcome = { ok: false, error: describeError(error) };
    }
    outcomes.push(outcome);
    if (raw.id) named[raw.id] = outcome;
  }
  process.stdout.write(JSON.stringify(outcomes) + '\n');
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + '\n');
  process.exit(1);
});
