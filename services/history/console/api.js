// A small client for ringback's REST APIs: the key goes in `Authorization: Bearer`, bodies are
// JSON, and every error answer (RFC 9457 problem+json) becomes an ApiError carrying its
// `title` and `detail`, which is what an agent should be shown.

/** An error answer from an API, or no answer at all (status 0). */
export class ApiError extends Error {
  constructor({ status, title, detail = "", errors = [], requestId = null, type = "", problem = {} }) {
    super(detail ? `${title}: ${detail}` : title);
    this.name = "ApiError";
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.errors = errors;
    this.requestId = requestId;
    this.type = type;
    // The whole answer, for the members a problem type adds (a 409's `presence`, say).
    this.problem = problem;
  }

  /** The problem type's last part (`urn:ringback:problem:agent-not-available`): what code may branch on. */
  get slug() {
    return this.type.split(/[:/]/).pop();
  }

  /** What to tell the agent: the problem's title and detail, and the first field error. */
  describe() {
    const parts = [this.title];
    if (this.detail && this.detail !== this.title) parts.push(this.detail);
    const first = this.errors[0];
    if (first && first.msg) parts.push(`${(first.loc || []).join(".")}: ${first.msg}`);
    return parts.join(" — ");
  }

  static async from(response) {
    let problem = {};
    const contentType = response.headers.get("Content-Type") || "";
    if (contentType.includes("json")) {
      problem = (await response.json().catch(() => null)) || {};
    }
    return new ApiError({
      status: response.status,
      title: typeof problem.title === "string" ? problem.title : `HTTP ${response.status}`,
      detail: typeof problem.detail === "string" ? problem.detail : "",
      errors: Array.isArray(problem.errors) ? problem.errors : [],
      requestId: response.headers.get("X-Request-ID"),
      type: typeof problem.type === "string" ? problem.type : "",
      problem: typeof problem === "object" ? problem : {},
    });
  }
}

export class Api {
  /**
   * @param {string} baseUrl the service's root (`https://callback.example` or, for the
   *   service that serves this page, its own root)
   * @param {string} key an API key
   */
  constructor(baseUrl, key) {
    this.baseUrl = baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`;
    this.key = key;
  }

  url(path, query = {}) {
    const url = new URL(path.replace(/^\//, ""), this.baseUrl);
    for (const [name, value] of Object.entries(query)) {
      // A list is a repeated parameter (`?queue=a&queue=b`).
      for (const one of Array.isArray(value) ? value : [value]) {
        if (one !== null && one !== undefined && one !== "") {
          url.searchParams.append(name, String(one));
        }
      }
    }
    return url;
  }

  /** Send a request; the parsed JSON answer, null for 204, or throws ApiError. */
  async request(method, path, { query, body, headers = {}, signal, accept } = {}) {
    const response = await this.send(method, path, { query, body, headers, signal, accept });
    if (!response.ok) throw await ApiError.from(response);
    if (response.status === 204) return null;
    return response.json();
  }

  /** The raw Response (for the event stream), after the same error handling for no answer. */
  async send(method, path, { query, body, headers = {}, signal, accept } = {}) {
    const init = {
      method,
      headers: {
        Accept: accept || "application/json, application/problem+json",
        Authorization: `Bearer ${this.key}`,
        ...headers,
      },
      signal,
      cache: "no-store",
      // The key is the credential; no cookies go anywhere.
      credentials: "omit",
      referrerPolicy: "no-referrer",
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    try {
      return await fetch(this.url(path, query), init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      // fetch() gives no detail on purpose (it may be CORS, DNS, a refused connection).
      throw new ApiError({
        status: 0,
        title: "No answer",
        detail: `${this.baseUrl} could not be reached (down, or not allowing this page's origin).`,
      });
    }
  }

  get(path, query, options = {}) {
    return this.request("GET", path, { ...options, query });
  }

  post(path, body, options = {}) {
    return this.request("POST", path, { ...options, body });
  }

  put(path, body, options = {}) {
    return this.request("PUT", path, { ...options, body });
  }
}
