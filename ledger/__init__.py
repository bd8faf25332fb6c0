"""The embedded py-evm ledger that every site replicates and that elects leaders."""
