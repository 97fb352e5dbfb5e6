// Preact with htm: components written as tagged templates, no build step. Text put into a
// template is always a text node, never parsed as HTML (no dangerouslySetInnerHTML here).
import { Fragment, h, render } from "../vendor/preact.module.js";
import htm from "../vendor/htm.module.js";

export * from "../vendor/hooks.module.js";
export { Fragment, h, render };
export const html = htm.bind(h);
