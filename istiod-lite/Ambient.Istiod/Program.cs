Console.WriteLine("istiod-lite");
