/* Background callbacks: poll a job fast while it is young, then less often.
 *
 * Dash asks the server about a background job at one fixed interval per callback:
 * dash-renderer (handleServerside) answers every poll with
 * `setTimeout(handle, background.interval)` and sends the next one with the job's
 * handle in the `job` query parameter of `_dash-update-component`. A fixed 100 ms
 * makes a short run report at once but costs ten requests a second for as long as
 * a long run lasts.
 *
 * So the callback keeps the fast interval, and this wrapper around `fetch` holds
 * each poll of a job back until the job's age calls for it: the same rule as a
 * queued run's polls (myapp/dashboard/polling.py), whose numbers the page carries
 * in <meta name="myapp-run-poll">. The renderer waits for the answer before it
 * schedules the next poll, so holding a request back spaces all later ones. Every
 * other request, and the first one that starts the job, goes out untouched.
 */
(function () {
    "use strict";
    const meta = document.querySelector('meta[name="myapp-run-poll"]');
    if (!meta || typeof window.fetch !== "function") {
        return;
    }
    const policy = JSON.parse(meta.content);
    const sendNow = window.fetch.bind(window);
    const jobs = new Map(); // job handle -> {first, last} (ms, Date.now())

    function jobOf(input) {
        if (typeof input !== "string") {
            return null;
        }
        const url = new URL(input, window.location.href);
        if (!url.pathname.endsWith("/_dash-update-component")) {
            return null;
        }
        return url.searchParams.get("job");
    }

    function holdMs(job, now) {
        let seen = jobs.get(job);
        if (seen === undefined) {
            // The first poll of a job comes one fast interval after its start.
            seen = { first: now - policy.first_ms, last: now };
            jobs.set(job, seen);
        }
        seen.last = now;
        for (const [other, times] of jobs) {
            if (now - times.last > policy.forget_ms) {
                jobs.delete(other); // finished or cancelled long ago
            }
        }
        const age = now - seen.first;
        const wanted = Math.min(
            policy.aged_ms,
            Math.max(policy.first_ms, age / policy.age_divisor),
        );
        // The renderer has already waited the callback's own interval.
        return wanted - policy.first_ms;
    }

    window.fetch = function (input, init) {
        let hold = 0;
        try {
            const job = jobOf(input);
            hold = job === null ? 0 : holdMs(job, Date.now());
        } catch (error) {
            hold = 0; // never let pacing stop a request
        }
        if (hold <= 0) {
            return sendNow(input, init);
        }
        return new Promise((resolve) => setTimeout(resolve, hold)).then(() =>
            sendNow(input, init),
        );
    };
})();
