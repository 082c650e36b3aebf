from services.vault_writer.app import main

main()
