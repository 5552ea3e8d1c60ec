from worker_service.main import main

if __name__ == "__main__":  # not when the process pool's children import the main module
    main()
