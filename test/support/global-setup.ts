// Placeholder: replaced by the FerretDB harness (starts the database the suite needs).
export default async function globalSetup(): Promise<void> {}
