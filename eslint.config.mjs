// Lint rules for the TypeScript sources, tests and benches (run by `npm run lint` and `npm test`).
// typescript-eslint's recommended rules without type information: type checking is tsc's job,
// and the untyped rules keep the lint step a few seconds on two cores.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import comments from "@eslint-community/eslint-plugin-eslint-comments/configs";

export default tseslint.config(
  { ignores: ["dist/**", "gen/**", "node_modules/**", "web/dist/**", "coverage/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  comments.recommended,
  {
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      // Unused names are tsc's noUnusedLocals/noUnusedParameters; "_"-prefixed ones are deliberate.
      // A rule switched off inline says why on the same line: "eslint-disable-next-line rule -- reason".
      "@eslint-community/eslint-comments/require-description": ["error", { ignore: [] }],
      "@eslint-community/eslint-comments/disable-enable-pair": ["error", { allowWholeFile: true }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }],
    },
  },
  {
    // Plain Node scripts (CommonJS) beside the TypeScript.
    files: ["**/*.js", "**/*.cjs"],
    languageOptions: {
      sourceType: "commonjs",
      globals: { require: "readonly", module: "writable", process: "readonly", __dirname: "readonly", console: "readonly" },
    },
    // CommonJS loads with require(); that is the point of these files.
    rules: { "@typescript-eslint/no-require-imports": "off" },
  },
);
